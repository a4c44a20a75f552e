"""``make airflow``: Airflow standalone on 127.0.0.1 with this project's DAGs, plugin and demo store."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from demo.airflow_env import airflow_environment


def main() -> int:
    home = Path("build/airflow-ui").absolute()
    store = Path(os.environ.get("CRACK_STORE", "build/demo/store")).absolute()
    environment = airflow_environment(
        home,
        {
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": os.environ.get("AIRFLOW_PORT", "8080"),
            "AIRFLOW__CORE__LAZY_LOAD_PLUGINS": "False",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            # The deployment's default, as in docker-compose.yml: a Variable crack_store set in the UI or CLI wins
            # over it (as AIRFLOW_VAR_CRACK_STORE, Airflow read it before the metastore and hid that Variable).
            "CRACK_STORE": str(store),
        },
    )
    # A stable secret across restarts, 64+ bytes (standalone's generated one is too short).
    secret_file = home / "jwt_secret"
    if not secret_file.is_file():
        secret_file.write_text(environment["AIRFLOW__API_AUTH__JWT_SECRET"])
    environment["AIRFLOW__API_AUTH__JWT_SECRET"] = secret_file.read_text().strip()
    print(f"Airflow home {home}; store {store} (run `make demo` first to fill it)", flush=True)
    airflow = str(Path(sys.executable).with_name("airflow"))
    os.execve(airflow, [airflow, "standalone"], environment)
    return 0


if __name__ == "__main__":
    sys.exit(main())

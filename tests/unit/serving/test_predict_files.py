"""``crack-model predict`` reads the files it is given: each within the upload limit, only regular files."""

from __future__ import annotations

import os
import threading

import pytest

from crack_model.core.errors import CrackModelError
from crack_model.serving.predict import read_image_file
from tests import imagefiles


def test_a_regular_file_is_read_whole(tmp_path):
    photo = tmp_path / "a.jpg"
    photo.write_bytes(imagefiles.jpeg())
    assert read_image_file(str(photo)) == imagefiles.jpeg()


def test_a_device_is_refused_not_read():
    """``/dev/null`` used to read as an empty file; ``/dev/zero`` never ends."""
    for device in ("/dev/null", "/dev/zero"):
        with pytest.raises(CrackModelError, match=rf"^{device} is not a regular file \(a pipe, socket or device\)"):
            read_image_file(device)


def test_a_named_pipe_and_a_socket_are_refused_unopened(tmp_path):
    """Opening a pipe nobody writes to blocks a plain ``open``: the read runs in a thread so that a hang fails
    the test instead of stopping the suite, and a writer then opens the pipe to let a stuck thread go. A
    socket cannot be opened at all ("No such device or address" was its row)."""
    import socket

    pipe = tmp_path / "photo.jpg"
    os.mkfifo(pipe)
    outcome: list[BaseException | bytes] = []

    def read() -> None:
        try:
            outcome.append(read_image_file(str(pipe)))
        except BaseException as error:
            outcome.append(error)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(60)
    if reader.is_alive():
        os.close(os.open(pipe, os.O_WRONLY | os.O_NONBLOCK))  # releases the blocked open
        reader.join(60)
    assert len(outcome) == 1 and isinstance(outcome[0], CrackModelError), outcome
    assert "is not a regular file (a pipe, socket or device)" in str(outcome[0])
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(tmp_path / "socket.jpg"))
        with pytest.raises(CrackModelError, match=r"socket\.jpg is not a regular file \(a pipe, socket or device\)"):
            read_image_file(str(tmp_path / "socket.jpg"))
    with pytest.raises(CrackModelError, match=r"is a folder: pass image files"):
        read_image_file(str(tmp_path))


def test_a_file_over_the_upload_limit_is_refused_unread(tmp_path):
    """A giant named on the command line is that file's row ("too large"), refused by its size before a byte of
    it is read (it is sparse: reading it would take 640 MiB of memory)."""
    from crack_model.core.uploads import MAX_UPLOAD_BYTES

    giant = tmp_path / "scan.tif"
    with giant.open("wb") as handle:
        handle.truncate(MAX_UPLOAD_BYTES + 1)
    with pytest.raises(CrackModelError, match=rf"^too large: {MAX_UPLOAD_BYTES + 1:,} bytes, over the limit of"):
        read_image_file(str(giant))


def test_files_a_folder_holds_that_are_not_image_names_are_named_when_left_out(tmp_path, caplog):
    """``predict FOLDER`` left out a photo saved without an extension, a hidden one and a backup in silence."""
    from crack_model.serving.predict import expand_paths

    for name in ("photo.JPG", "sub/deep.jpg", ".hidden.jpg", "noext", "scan.jpeg.bak"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"jpeg")
    with caplog.at_level("WARNING", logger="crack_model.serving.predict"):
        found = expand_paths([tmp_path])
    assert found == [str(tmp_path / "photo.JPG"), str(tmp_path / "sub" / "deep.jpg")]
    [warning] = [record.getMessage() for record in caplog.records]
    assert warning.startswith("3 file(s)") and all(name in warning for name in (".hidden.jpg", "noext", ".bak"))
    assert "hidden" in warning and "not an image file name" in warning

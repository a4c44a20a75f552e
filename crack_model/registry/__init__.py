"""The model registry: immutable versions, CAS-guarded aliases with an audit log, ``models:/`` URIs."""

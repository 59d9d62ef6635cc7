"""The operator CLI, ``python -m ops``: run by people and CI, never packaged into Lambda."""

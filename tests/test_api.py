"""The public API is exactly what replay/__init__.py lists."""

import replay


def test_all_lists_exactly_the_public_names() -> None:
    # The package imports its names on first use (PEP 562): what it can give is the lazy
    # map, the errors it imports, and the version.
    errors = {
        n
        for n, v in vars(replay).items()
        if isinstance(v, type) and issubclass(v, Exception) and n not in replay._WHERE
    }
    assert set(replay.__all__) == {"__version__", *replay._WHERE, *errors}


def test_every_public_name_resolves_to_what_its_module_defines() -> None:
    import importlib

    for name, where in replay._WHERE.items():
        assert getattr(replay, name) is getattr(importlib.import_module(f"replay.{where}"), name)
    assert dir(replay) == sorted(replay.__all__)


def test_every_exported_error_derives_from_replay_error() -> None:
    from replay import errors

    for name, code in errors.EXIT_CODES.items():
        cls = getattr(errors, name)
        assert issubclass(cls, replay.ReplayError)
        assert code not in (0, 1) or cls is replay.ReplayError

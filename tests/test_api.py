"""The public API is exactly what replay/__init__.py lists."""

import replay


def test_all_lists_exactly_the_public_names() -> None:
    public = {name for name in dir(replay) if not name.startswith("_")}
    modules = {name for name in public if type(getattr(replay, name)).__name__ == "module"}
    assert set(replay.__all__) - {"__version__"} == public - modules


def test_every_exported_error_derives_from_replay_error() -> None:
    from replay import errors

    for name, code in errors.EXIT_CODES.items():
        cls = getattr(errors, name)
        assert issubclass(cls, replay.ReplayError)
        assert code not in (0, 1) or cls is replay.ReplayError

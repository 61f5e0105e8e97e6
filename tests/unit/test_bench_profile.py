"""`python -m bench.profile`: py-spy's raw samples, by the library whose frame is innermost."""

from bench.profile import shares


def test_each_sample_goes_to_the_innermost_library_else_the_service_else_other() -> None:
    raw = [
        "run (uvicorn/main.py:1);accept (notify/api.py:162);Connection._do_execute (asyncpg/connection.py:2069) 6",
        "run (uvicorn/main.py:1);accept (notify/api.py:162);record_fact (notify/commands.py:95) 3",
        "_run_once (asyncio/base_events.py:1922) 2",
        "<module> (<frozen runpy>:88) 1",
        "",
    ]
    total, by_library = shares(raw)
    assert total == 12
    assert by_library == {"asyncpg": 6, "app": 3, "asyncio event loop": 2, "other": 1}

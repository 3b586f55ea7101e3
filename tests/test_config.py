import argparse

import pytest

from radmesh.common.config import add_serve_arguments, env_name, serve_config_from_args
from radmesh.common.errors import InvalidInputError


def _parse(argv):
    p = argparse.ArgumentParser()
    add_serve_arguments(p, default_port=50054, default_metrics_port=9104)
    return serve_config_from_args(p.parse_args(argv))


def test_defaults_environment_and_flags(monkeypatch):
    assert _parse([]).port == 50054
    monkeypatch.setenv("RADMESH_PORT", "6000")
    monkeypatch.setenv("RADMESH_DRAIN_S", "2.5")
    cfg = _parse([])
    assert (cfg.port, cfg.drain_s) == (6000, 2.5)
    assert _parse(["--port", "7000"]).port == 7000  # a flag wins over the environment


def test_every_flag_has_an_environment_variable():
    p = argparse.ArgumentParser()
    add_serve_arguments(p, default_port=1, default_metrics_port=2)
    flags = [a.option_strings[0] for a in p._actions if a.option_strings and a.option_strings[0] != "-h"]
    assert len(flags) >= 9
    for flag in flags:
        help_text = next(a.help for a in p._actions if a.option_strings and a.option_strings[0] == flag)
        assert env_name(flag) in help_text


def test_bad_values_are_refused(monkeypatch):
    with pytest.raises(InvalidInputError, match="not a TCP port"):
        _parse(["--port", "70000"])
    with pytest.raises(InvalidInputError, match="log-level"):
        _parse(["--log-level", "LOUD"])
    monkeypatch.setenv("RADMESH_WORKERS", "many")
    with pytest.raises(InvalidInputError, match="RADMESH_WORKERS"):
        _parse([])

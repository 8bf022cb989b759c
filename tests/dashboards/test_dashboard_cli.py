"""`search dashboard` argument parsing (the serving itself is covered by the security tests)."""
from __future__ import annotations

import argparse

import pytest

from search import dashboard_cli


def parse(*argv):
    p = argparse.ArgumentParser(prog="search")
    dashboard_cli.add_parser(p.add_subparsers())
    return p.parse_args(["dashboard", *argv])


def test_defaults_bind_loopback_on_8080():
    args = parse()
    assert (args.host, args.port, args.storage, args.allowed_host, args.poll) == ("127.0.0.1", 8080, None, [], 3.0)


def test_options():
    args = parse("--storage", "sqlite:///x.db", "--host", "0.0.0.0", "--port", "9001",
                 "--allowed-host", "a.example", "--allowed-host", "b.example", "--poll", "0.5")
    assert (args.storage, args.host, args.port, args.allowed_host, args.poll) == (
        "sqlite:///x.db", "0.0.0.0", 9001, ["a.example", "b.example"], 0.5)


@pytest.mark.parametrize("argv,message", [(["--port", "0"], "port number"), (["--port", "http"], "port number"),
                                          (["--poll", "0"], "seconds > 0")])
def test_bad_values_are_refused(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        parse(*argv)
    assert info.value.code == 2 and message in capsys.readouterr().err


def test_missing_database_is_an_input_error(tmp_path):
    from storage import StorageError

    with pytest.raises(StorageError, match="no database file"):
        dashboard_cli.run(parse("--storage", f"sqlite:///{tmp_path / 'none.db'}", "--port", "9"))
    assert not (tmp_path / "none.db").exists()


def test_a_port_in_use_is_one_line_exit_2_before_any_url(dash_url, capsys):
    import socket

    from search.cli import main

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["dashboard", "--storage", dash_url, "--port", str(port)]) == 2
    out, err = capsys.readouterr()
    assert out == ""  # no "open http://..." for a server that never listened
    assert err.strip() == f"error: cannot listen on 127.0.0.1:{port}: port {port} is in use (another dashboard?); choose another --port"


@pytest.mark.parametrize("host, why", [("192.0.2.250", "is not an address of this machine"),
                                       ("no-such-host.invalid", "is not a name or address this machine resolves")])
def test_an_address_the_machine_lacks_is_one_line_exit_2(dash_url, capsys, host, why):
    from search.cli import main

    assert main(["dashboard", "--storage", dash_url, "--host", host, "--port", "18999"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith(f"error: cannot listen on {host}:18999: ") and why in err and err.count("\n") == 1

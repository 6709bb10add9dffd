"""Every misuse of a `samsa` command is one line on stderr, `samsa <command>: <message>`, and
exit code 2, never a traceback (issue 17's list, one test each); `--debug` shows the traceback.

`samsa serve` runs as the installed command (a process, as a user runs it); the other
commands run `samsa.cli.main` in this process, which is faster.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from samsa.cli import main
from samsa.testing.process import SAMSA

# An address that is no host's here (TEST-NET-1, RFC 5737), and a name that never resolves
# (RFC 2606's .invalid).
FOREIGN_HOST = "192.0.2.1"
UNRESOLVABLE_HOST = "no-such-host.invalid"


def misuse(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Run `samsa argv`; assert exit 2 and one stderr line; that line. `serve` runs as a
    process: it logs to stderr, which `logging` holds from its first configuration, not the
    stream capsys swaps in."""
    if "serve" in argv:
        done = run_samsa(*argv)
        code, err = done.returncode, done.stderr
    else:
        try:
            code = main(list(argv))
        except SystemExit as exc:  # argparse's errors exit from inside parse_args
            code = exc.code  # type: ignore[assignment]
        err = capsys.readouterr().err
    assert code == 2, (code, err)
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture
def listening() -> Iterator[int]:
    """A port something listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_serve_on_a_port_in_use(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, listening: int
) -> None:
    line = misuse(capsys, "serve", "--data-dir", str(tmp_path), "--port", str(listening))
    assert line == (
        f"samsa serve: cannot listen on 127.0.0.1:{listening} (PLAINTEXT): Address already in use"
    )


def test_serve_on_a_port_out_of_range(capsys: pytest.CaptureFixture[str]) -> None:
    line = misuse(capsys, "serve", "--port", "99999")
    assert line == "samsa serve: argument --port: 99999 is not a port (0-65535)"


@pytest.mark.parametrize("host", [UNRESOLVABLE_HOST, FOREIGN_HOST])
def test_serve_on_a_host_it_cannot_listen_on(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, host: str
) -> None:
    line = misuse(capsys, "serve", "--data-dir", str(tmp_path), "--host", host, "--port", "0")
    assert line.startswith(f"samsa serve: cannot listen on {host}:0 (PLAINTEXT): "), line


@pytest.mark.parametrize(
    ("assignment", "message"),
    [
        ("noequals", "--set takes NAME=VALUE, got 'noequals'"),
        ("advertised.listeners=garbage", "advertised.listeners: 'garbage' is not NAME://host:port"),
        ("num.partitions=0", "Invalid value 0 for configuration num.partitions: "),
        ("no.such.setting=1", "unknown broker setting 'no.such.setting'"),
    ],
    ids=["noequals", "advertised-garbage", "num-partitions-0", "unknown-name"],
)
def test_serve_with_a_bad_setting(
    capsys: pytest.CaptureFixture[str], assignment: str, message: str
) -> None:
    line = misuse(capsys, "serve", "--set", assignment)
    assert line.startswith(f"samsa serve: {message}"), line


def test_serve_with_a_garbage_line_in_the_config_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = tmp_path / "server.properties"
    config.write_text("num.partitions=1\nthis is not a setting\n")
    line = misuse(capsys, "serve", "--config", str(config))
    assert line == (
        f"samsa serve: --config {config}: line 2: expected name=value, got 'this is not a setting'"
    )


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda path: None, "No such file or directory"),
        (lambda path: path.mkdir(), "Is a directory"),
        (lambda path: path.write_bytes(b"num.partitions=\xff\n"), "not UTF-8 text (byte 15)"),
    ],
    ids=["missing", "directory", "not-utf8"],
)
def test_serve_with_a_config_file_it_cannot_read(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, make: object, reason: str
) -> None:
    path = tmp_path / "server.properties"
    make(path)  # type: ignore[operator]
    assert misuse(capsys, "serve", "--config", str(path)) == (
        f"samsa serve: --config {path}: {reason}"
    )


def test_serve_on_a_data_dir_that_is_a_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    data_dir.write_text("")
    line = misuse(capsys, "serve", "--data-dir", str(data_dir), "--port", "0")
    assert line.startswith(f"samsa serve: cannot use data dir {data_dir}: Not a directory"), line


@contextlib.contextmanager
def read_only_dir(path: Path) -> Iterator[str]:
    """A read-only dir: a read-only tmpfs mounted there as root (root ignores permissions),
    else a dir without write permission. Yields which."""
    path.mkdir()
    if os.geteuid() == 0:
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(path)],
            capture_output=True,
            text=True,
        )
        if mounted.returncode != 0:
            pytest.skip(f"running as root and cannot mount a read-only tmpfs: {mounted.stderr}")
        try:
            yield "Read-only file system"
        finally:
            subprocess.run(["umount", str(path)], check=True)
    else:
        path.chmod(0o555)
        try:
            yield "Permission denied"
        finally:
            path.chmod(0o755)


def test_serve_on_a_read_only_data_dir(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with read_only_dir(data_dir) as reason:
        line = misuse(capsys, "serve", "--data-dir", str(data_dir), "--port", "0")
    assert line.startswith(f"samsa serve: cannot use data dir {data_dir}: {reason}"), line


def test_serve_on_a_data_dir_with_a_corrupt_topics_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "topics.json").write_text("{garbage")
    line = misuse(capsys, "serve", "--data-dir", str(tmp_path), "--port", "0")
    assert line.startswith(f"samsa serve: {tmp_path / 'topics.json'} is not valid JSON"), line


def test_a_log_level_that_does_not_exist(capsys: pytest.CaptureFixture[str]) -> None:
    assert misuse(capsys, "--log-level", "LOUD", "serve") == (
        "samsa: argument --log-level: 'LOUD' is not one of DEBUG, INFO, WARNING, ERROR"
    )


def test_an_unknown_option_names_the_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert misuse(capsys, "serve", "--nope") == "samsa serve: unrecognized arguments: --nope"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "No such file or directory"),
        ("garbage\n", "line 1: not an operation of a samsa verify history"),
        ('{"no": "such field"}\n', "line 1: not an operation of a samsa verify history"),
    ],
    ids=["missing", "not-json", "not-an-op"],
)
def test_verify_check_of_a_history_it_cannot_read(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, content: str | None, message: str
) -> None:
    # Exit 2, not 1: 1 means "the history has an anomaly".
    history = tmp_path / "history.jsonl"
    if content is not None:
        history.write_text(content)
    line = misuse(capsys, "verify", "--check", str(history))
    assert line.startswith(f"samsa verify: {history}"), line
    assert message in line, line


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["verify", "--duration", "-5"], "argument --duration: -5 is not a number greater than 0"),
        (["sim", "--seeds", "0"], "argument --seeds: 0 is not a positive integer (1 or more)"),
        (["sim", "--seeds", "-3"], "argument --seeds: -3 is not a positive integer (1 or more)"),
        (
            ["streams", "run", "--commit-interval-ms", "0", "x:app"],
            "argument --commit-interval-ms: 0 is not a positive integer (1 or more)",
        ),
        (
            ["chaos", "--listen", "127.0.0.1:99999", "--upstream", "127.0.0.1:9092"],
            "argument --listen: expected HOST:PORT (port 0-65535), got '127.0.0.1:99999'",
        ),
    ],
    ids=["verify-duration", "sim-seeds-0", "sim-seeds-negative", "streams-commit", "chaos-port"],
)
def test_numbers_out_of_range(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    command = " ".join(argv[:2]) if argv[0] == "streams" else argv[0]
    assert misuse(capsys, *argv) == f"samsa {command}: {message}"


def test_streams_run_of_an_app_that_does_not_import(capsys: pytest.CaptureFixture[str]) -> None:
    line = misuse(capsys, "streams", "run", "no_such_module_here:app")
    assert line == (
        "samsa streams: cannot import 'no_such_module_here': No module named 'no_such_module_here'"
    )


@pytest.mark.parametrize(
    "url", ["not a url", "postgresql://nobody@127.0.0.1:1/none"], ids=["malformed", "no-server"]
)
def test_demo_payments_with_a_postgres_url_that_does_not_work(
    capsys: pytest.CaptureFixture[str], url: str
) -> None:
    line = misuse(capsys, "demo", "payments", "--postgres", url)
    assert line.startswith(f"samsa demo: --postgres {url}: "), line


def test_chaos_on_an_address_it_cannot_listen_on(capsys: pytest.CaptureFixture[str]) -> None:
    line = misuse(capsys, "chaos", "--listen", f"{FOREIGN_HOST}:0", "--upstream", "127.0.0.1:9")
    assert line.startswith(f"samsa chaos: cannot listen on {FOREIGN_HOST}:0: "), line


def run_samsa(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SAMSA, *argv], capture_output=True, text=True, timeout=60)


def test_the_installed_command_exits_2_with_one_line(tmp_path: Path, listening: int) -> None:
    for argv in (
        ["serve", "--port", "99999"],
        ["serve", "--data-dir", str(tmp_path), "--port", str(listening)],
    ):
        done = run_samsa(*argv)
        assert done.returncode == 2, done
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert done.stderr.startswith("samsa serve: "), done.stderr


def test_debug_shows_the_traceback(tmp_path: Path, listening: int) -> None:
    done = run_samsa("--debug", "serve", "--data-dir", str(tmp_path), "--port", str(listening))
    assert done.returncode != 0
    assert "Traceback" in done.stderr and "Address already in use" in done.stderr


def test_serve_help_describes_every_option_with_its_default() -> None:
    done = run_samsa("serve", "--help")
    assert done.returncode == 0
    text = " ".join(done.stdout.split())
    for option in ("--data-dir", "--host", "--port", "--config", "--set"):
        assert option in text
    assert text.count("default: ") == 5, text  # one per option
    assert "win over the file's log.dirs and listeners" in text


def test_verify_against_a_bootstrap_nothing_listens_on(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:  # a port bound but not listening: connections are refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        line = misuse(capsys, "verify", "--bootstrap", f"127.0.0.1:{port}", "--duration", "1")
    assert (
        line == f"samsa verify: --bootstrap: cannot connect to 127.0.0.1:{port}: Connection refused"
    )

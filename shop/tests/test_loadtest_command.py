"""`manage.py loadtest` and `make loadtest` refuse bad arguments and a system that is
not there in one line, with exit status 2, before anything is seeded or written."""

import socket
import subprocess
import sys

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command

from shop import devenv
from shop.devenv import BASE


@pytest.mark.parametrize(
    "argv",
    [["--stages=light=-1"], ["--modes=saga"], ["--mix=normal=1,x=1"], ["--clients=0"]],
)
def test_a_bad_argument_is_refused_before_anything_is_written(tmp_path, argv):
    out = tmp_path / "report"

    with pytest.raises(CommandError) as refused:
        call_command("loadtest", "--url=http://127.0.0.1:9", f"--out={out}", *argv)

    assert refused.value.returncode == 2
    assert not out.exists()


def test_on_the_command_line_a_bad_argument_is_one_line_and_exit_status_2():
    for argv in (["--stages", "light=-1"], ["--no-such-option"]):
        done = subprocess.run(
            [sys.executable, str(BASE / "manage.py"), "loadtest", *argv],
            capture_output=True,
            text=True,
            timeout=60,
        )

        assert done.returncode == 2
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert done.stdout == ""


@pytest.mark.django_db
def test_no_system_at_the_url_is_refused_before_anything_is_seeded(tmp_path):
    out = tmp_path / "report"

    with pytest.raises(CommandError, match="no sagashop answers at") as refused:
        call_command("loadtest", "--url=http://127.0.0.1:9", f"--out={out}")

    assert refused.value.returncode == 2
    assert not out.exists()
    assert not User.objects.filter(username__startswith="load").exists()


@pytest.fixture
def taken_web_port(monkeypatch):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        monkeypatch.setenv("WEB_PORT", str(holder.getsockname()[1]))
        yield


@pytest.mark.parametrize("argv", [["--modes", "saga"], ["--url", "http://x:1"]])
def test_make_loadtest_checks_its_arguments_before_it_starts_anything(
    taken_web_port, capsys, argv
):
    # Were the system started first, the taken port would refuse it (exit status 1).
    assert devenv.main(["loadtest", *argv]) == 2

    error = capsys.readouterr().err
    assert error.startswith("devenv: loadtest: ")
    assert len(error.strip().splitlines()) == 1

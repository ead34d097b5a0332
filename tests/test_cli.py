"""The command line: help, the data commands end to end on tiny sizes, one-line user errors."""

import json
import subprocess
import sys

import pytest

from ikd.cli import main

# a webcam at 5 frames/s, not 30: enough for a face per gait window, a sixth of the frames to draw
TINY = ["--preset", "smoke", "synthetic.num_identities=2", "synthetic.walks_per_identity=2",
        "face.frame_rate_hz=5"]  # fmt: skip


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ikd", *args], capture_output=True, text=True, timeout=120
    )


def test_python_dash_m_prints_help():
    result = _run("--help")
    assert result.returncode == 0 and "data" in result.stdout and "run" in result.stdout


def test_overrides_may_come_before_options(tmp_path):
    assert (
        main(
            [
                "data",
                "preview",
                "synthetic.num_identities=2",
                "--preset",
                "smoke",
                "synthetic.walks_per_identity=1",
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )


def test_a_user_mistake_is_one_line_without_traceback():
    result = _run("run", "--preset", "smoke", "radar.num_chirp=3")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert errors == [
        "ikd: error: unknown config key 'radar.num_chirp'; did you mean 'radar.num_chirps'?"
    ]


def test_simulate_then_preview_a_capture_folder(tmp_path):
    captures = tmp_path / "captures"
    assert main(["data", "simulate", *TINY, "--out", str(captures)]) == 0
    metadata = json.loads((captures / "metadata.json").read_text())
    assert metadata["source"]["synthetic"] and len(metadata["captures"]) == 4
    assert all((captures / c["file"]).stat().st_size > 0 for c in metadata["captures"])
    out = tmp_path / "preview"
    assert main(["data", "preview", "--captures", str(captures), *TINY, "--out", str(out)]) == 0
    for name in ("grid.png", "spectrogram.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_preview_of_a_folder_without_metadata_is_a_user_error(tmp_path, capsys):
    assert main(["data", "preview", "--captures", str(tmp_path), "--preset", "smoke"]) == 2
    assert "metadata.json: no such file" in capsys.readouterr().err


@pytest.mark.parametrize(
    "command",
    [
        ["data", "simulate"],
        ["data", "preview"],
        ["data", "build"],
        ["data", "report"],
        ["teacher", "train"],
        ["run"],
    ],
)
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0 and "--preset" in capsys.readouterr().out


def test_simulate_refuses_a_huge_folder_without_force(tmp_path, capsys):
    assert main(["data", "simulate", "--preset", "laptop", "--out", str(tmp_path)]) == 2
    assert "GiB; pass --force" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_verbose_is_accepted_after_the_command(tmp_path):
    assert main(["data", "preview", *TINY, "-v", "--out", str(tmp_path)]) == 0


def test_an_output_path_that_is_a_file_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = _run("data", "preview", *TINY, "--out", str(blocker))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("ikd: error: ")

"""A submitted smoke study's wall time against the same study run directly (issue 13).

    RAY_AUTH_MODE=token python benchmarks/bench_job.py --dataset-root DIR [--study search_identitykd]

`DIR` holds a built smoke dataset whose teacher was trained (`ikd data build --preset smoke
teacher.source=trained data.root=DIR`). Runs `ikd study studies/<study>.py --preset smoke --quick`
once directly (`python -m ikd`, a local Ray of 2 CPUs) and once as a Ray job on a local head of
2 CPUs (`ikd.cluster.local_head`, the Job SDK, cluster/runtime_env.yaml's excludes), each into
fresh results, and prints both wall times (the job's: submit → SUCCEEDED, the head's start
excluded). Set RAY_AUTH_MODE=token before Python starts: Ray's clients read it once.
"""

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset-root", type=Path, required=True)
    parser.add_argument("--study", default="search_identitykd")
    args = parser.parse_args()

    import yaml
    from ray.job_submission import JobStatus, JobSubmissionClient

    from ikd.cluster import local_head, wait_for_job

    def command(results: Path) -> list[str]:
        return [sys.executable, "-m", "ikd", "study", f"studies/{args.study}.py", "--preset",
                "smoke", "--quick", "--results", str(results),
                f"data.root={args.dataset_root.resolve()}", "teacher.source=trained"]  # fmt: skip

    with tempfile.TemporaryDirectory() as scratch:
        start = time.perf_counter()
        subprocess.run(
            [*command(Path(scratch) / "direct"), "--num-cpus", "2"], cwd=ROOT, check=True
        )
        direct = time.perf_counter() - start
        runtime_env = yaml.safe_load((ROOT / "cluster" / "runtime_env.yaml").read_text())
        with local_head(num_cpus=2) as address:
            client = JobSubmissionClient(address)
            start = time.perf_counter()
            job = client.submit_job(
                entrypoint=" ".join(command(Path(scratch) / "job")),
                runtime_env={**runtime_env, "working_dir": str(ROOT)},
            )
            status, logs = wait_for_job(client, job)
            submitted = time.perf_counter() - start
            if status != JobStatus.SUCCEEDED:
                raise SystemExit(logs[-3000:])
    print(f"| {args.study}, smoke, --quick | direct {direct:.1f} s | as a Ray job {submitted:.1f} s "
          f"| {submitted / direct:.2f}× |")  # fmt: skip


if __name__ == "__main__":
    main()

"""``spacy-mbert annotate`` on a real Ray cluster: a head and a second node on this machine, on 127.0.0.1.

No mocks: ``ray start`` runs both nodes, the command runs as users run it, a worker
process is killed mid-run, and a driver killed mid-run is resumed. Every valid row
must come out exactly once, every bad row must be in the errors file.
"""

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("ray")

# Ray turns 127.0.0.1 into the machine's routable address (and then listens on every
# interface); keeping every node on loopback takes its node address as given. For the
# second node that needs the `ray start` code itself to see 127.0.0.1 (the environment
# variable below makes a worker node refuse to start), hence this launcher.
RAY_ON_LOOPBACK = """
import sys
import ray._private.services as services
services.get_node_ip_address = lambda address=None: "127.0.0.1"
from ray.scripts.scripts import main
sys.argv = ["ray"] + sys.argv[1:]
main()
"""
N_DOCS = 2000
BAD_ROWS = {
    101: ("{not json", "invalid JSON"),
    302: (json.dumps({"id": "no-text"}), "missing text"),
    503: (json.dumps({"id": "int-text", "text": 12}), "text must be a string (got int)"),
    704: (b'{"id": "bytes", "text": "caf\xe9"}', "undecodable bytes"),
}


# Ray's token authentication, on for the cluster's nodes and the drivers that join it.
AUTH = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32), "RAY_USAGE_STATS_ENABLED": "0"}


def driver_env() -> dict:
    # The driver finds its node by address: 127.0.0.1 here, as the nodes were started.
    return dict(os.environ, **AUTH, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", HF_HUB_OFFLINE="1")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_with_parent() -> None:
    """In the child: SIGTERM when the test process dies, so an interrupted run leaves no Ray node behind."""
    import ctypes

    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def ray_node(*args) -> subprocess.Popen:
    command = [sys.executable, "-c", RAY_ON_LOOPBACK, "start", "--block", "--disable-usage-stats", *args]
    env = dict(os.environ, **AUTH)
    return subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=stop_with_parent
    )


def alive_nodes(address: str) -> int:
    code = (
        f"import ray; ray.init(address={address!r}, log_to_driver=False); print(sum(n['Alive'] for n in ray.nodes()))"
    )
    run = subprocess.run([sys.executable, "-c", code], env=driver_env(), capture_output=True, text=True, timeout=120)
    return int(run.stdout.strip().splitlines()[-1]) if run.returncode == 0 else 0


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting for {what}")
        time.sleep(0.5)


@pytest.fixture(scope="module")
def cluster():
    port = free_port()
    address = f"127.0.0.1:{port}"
    memory = ["--object-store-memory", str(200 * 2**20)]
    head = ray_node("--head", "--node-ip-address", "127.0.0.1", "--port", str(port), "--num-cpus", "1",
                    "--include-dashboard", "false", *memory)  # fmt: skip
    nodes = [head]
    try:
        wait_for(lambda: alive_nodes(address) == 1, 300, "the head node")
        nodes.append(ray_node("--address", address, "--node-ip-address", "127.0.0.1", "--num-cpus", "1", *memory))
        wait_for(lambda: alive_nodes(address) == 2, 300, "the second node")
        yield address
    finally:
        for node in reversed(nodes):  # --block: stopping the command stops that node's processes
            node.send_signal(signal.SIGTERM)
            node.wait(timeout=60)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """~1,200 docs in two JSONL files and a text file, with bad rows among them."""
    folder = tmp_path_factory.mktemp("corpus")
    lines = []
    for i in range(N_DOCS):
        text = f"Satz {i}: das Spiel am Abend war gut, és a vacsora is. " * (1 + i % 4)
        lines.append(json.dumps({"id": f"d{i}", "text": text, "lang": "de"}, ensure_ascii=False).encode())
    for line, (raw, _) in sorted(BAD_ROWS.items()):
        lines.insert(line - 1, raw if isinstance(raw, bytes) else raw.encode())
    half = len(lines) // 2
    (folder / "part-a.jsonl").write_bytes(b"\n".join(lines[:half]) + b"\n")
    (folder / "part-b.jsonl").write_bytes(b"\n".join(lines[half:]) + b"\n")
    (folder / "part-c.txt").write_text("erste Zeile\n\nletzte Zeile \U0001f600\n", encoding="utf8")
    expected = {f"d{i}" for i in range(N_DOCS)} | {1, 2, 3}  # the text file's ids are its line numbers
    return folder, expected


def annotate(*args) -> subprocess.Popen:
    command = [sys.executable, "-m", "spacy_mbert", "annotate", *map(str, args)]
    return subprocess.Popen(command, env=driver_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def summary_line(log: str, mark: str = "✔") -> str:
    """The command's own last line (Ray's processes may log after it)."""
    return [line for line in log.splitlines() if line.startswith(mark)][-1]


def output_ids(path: Path) -> list:
    return [json.loads(line)["id"] for line in path.read_text(encoding="utf8").splitlines()]


def progress(path: Path) -> dict:
    try:
        return json.loads(Path(str(path) + ".progress.json").read_text())
    except (OSError, ValueError):
        return {}


def map_workers() -> list:
    """Pids of the Ray actor processes running ``Annotator`` (Ray names them in their command line)."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and b"MapWorker" in (entry / "cmdline").read_bytes():
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def check_outputs(out: Path, expected: set, corpus_dir: Path) -> None:
    ids = output_ids(out)
    assert len(ids) == len(set(ids)), "an id was written twice"
    assert set(ids) == expected, "an id was lost"
    assert [i for i in ids if isinstance(i, str)] == sorted(
        (i for i in ids if isinstance(i, str)), key=lambda s: int(s[1:])
    )
    errors = [json.loads(line) for line in Path(str(out) + ".errors.jsonl").read_text().splitlines()]
    assert len(errors) == len(BAD_ROWS)
    for error, (_, reason) in zip(errors, (BAD_ROWS[line] for line in sorted(BAD_ROWS))):
        assert error["reason"].startswith(reason) and error["line"] > 0, error
        assert Path(error["file"]).parent == corpus_dir


def test_two_workers_on_two_nodes_write_every_row_once_even_when_a_worker_is_killed(
    cluster, textcat_dir, corpus, tmp_path
):
    corpus_dir, expected = corpus
    out = tmp_path / "cats.jsonl"
    job = annotate(textcat_dir, corpus_dir, out, "--address", cluster, "--workers", 2, "--batch-size", 8)
    try:
        # Rows written by a worker (the two actors get a node each: each node has 1 CPU): kill it mid-run.
        wait_for(lambda: progress(out).get("docs", 0) > 0 or job.poll() is not None, 600, "the first batch")
        workers = map_workers()
        assert job.poll() is None and workers, "the job ended before a worker could be killed"
        os.kill(workers[0], signal.SIGKILL)
        log, _ = job.communicate(timeout=600)
    finally:
        job.kill()
    assert job.returncode == 0, log[-3000:]
    assert progress(out)["done"] is True
    summary = summary_line(log)
    assert summary.startswith(f"✔ {len(expected)} docs annotated, {len(BAD_ROWS)} errors"), summary
    check_outputs(out, expected, corpus_dir)


def test_an_existing_output_is_refused_and_an_interrupted_job_resumes_without_duplicates(
    cluster, textcat_dir, corpus, tmp_path
):
    corpus_dir, expected = corpus
    out = tmp_path / "cats.jsonl"
    args = (textcat_dir, corpus_dir, out, "--address", cluster, "--workers", 2, "--batch-size", 8)
    job = annotate(*args)
    try:
        wait_for(lambda: progress(out).get("docs", 0) > 0 or job.poll() is not None, 600, "the first batch")
        assert job.poll() is None
        job.kill()  # the driver dies mid-run
        job.wait()
    finally:
        job.kill()
    done_before = progress(out)["docs"]
    assert 0 < done_before < len(expected) and not progress(out)["done"]
    refused = annotate(*args)
    log, _ = refused.communicate(timeout=300)
    assert refused.returncode == 1 and summary_line(log, "✘") == (
        f"✘ {out} exists; pass --resume to finish that job, or choose another output."
    )
    resumed = annotate(*args, "--resume")
    log, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, log[-3000:]
    assert "done before, resumed" in summary_line(log)
    check_outputs(out, expected, corpus_dir)


def test_embedded_ray_by_default(textcat_dir, tmp_path):
    """No --address: a local Ray inside the command, on loopback, gone when it ends."""
    source = tmp_path / "docs.txt"
    source.write_text("".join(f"Zeile {i}\n" for i in range(40)), encoding="utf8")
    out = tmp_path / "cats.parquet"
    drop = ("RAY_ADDRESS", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN")
    env = {k: v for k, v in driver_env().items() if k not in drop}
    command = [sys.executable, "-m", "spacy_mbert", "annotate", str(textcat_dir), str(source), str(out)]
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    import pyarrow.parquet as pq

    table = pq.read_table(out)
    assert table.column("id").to_pylist() == [str(i) for i in range(1, 41)]
    assert set(table.column("cats").to_pylist()[0][k][0] for k in range(3)) == {"food", "sports", "weather"}

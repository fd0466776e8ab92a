"""Run a local single-node Kafka (KRaft) broker without Docker, and manage project topics.

The broker jars come from Maven Central via `pom.xml` and are cached in
`~/.cache/cryptoflow/kafka-<version>/lib` (or `$CRYPTOFLOW_KAFKA_HOME/lib`). Broker state lives
under `<data_dir>/kafka`: `server.properties`, `logs/` (the log dir, with meta.properties),
`broker.pid`, `broker.log` (log4j) and `broker.out` (JVM stdout/stderr).

If the bootstrap already answers (a compose broker, a remote `KAFKA_BOOTSTRAP`) nothing is
started; only topics are ensured. A non-loopback bootstrap is never started locally.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import ipaddress
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewPartitions, NewTopic

from schemas.topics import TOPICS

log = logging.getLogger("cryptoflow.infra.kafka")

KAFKA_VERSION = "4.3.1"  # newest 4.x fully published on Maven Central (4.4.0 lacks kafka-tools-api)
POM = Path(__file__).with_name("pom.xml")
DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
HEAP_OPTS = "-Xmx512m -Xms256m"
# Project topics keep data forever: replays produce trades with historical CreateTime, which
# time-based retention would delete within minutes.
TOPIC_CONFIG = {"retention.ms": "-1", "retention.bytes": "-1"}
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}

_LOG4J2 = """\
status = warn
appender.file.type = RollingFile
appender.file.name = FILE
appender.file.fileName = {log}
appender.file.filePattern = {log}.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 20MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 3
rootLogger.level = info
rootLogger.appenderRef.file.ref = FILE
logger.state.name = state.change.logger
logger.state.level = warn
logger.cleaner.name = kafka.log.LogCleaner
logger.cleaner.level = warn
"""


# ----------------------------------------------------------------------------- jars


def kafka_home() -> Path:
    env = os.environ.get("CRYPTOFLOW_KAFKA_HOME")
    if env:
        return Path(env).expanduser().resolve()
    return Path.home() / ".cache" / "cryptoflow" / f"kafka-{KAFKA_VERSION}"


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Serialise concurrent `up`s (parallel pytest sessions, two shells) on one machine."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_jars(home: Path | None = None) -> Path:
    """Return the directory holding the broker jars, fetching them with Maven the first time."""
    home = home or kafka_home()
    lib = home / "lib"
    marker = lib / ".complete"
    if marker.exists():
        return lib
    with _file_lock(home / ".fetch.lock"):
        if marker.exists():
            return lib
        mvn = shutil.which("mvn")
        if mvn is None:
            raise RuntimeError("Maven (mvn) is needed once to fetch the Kafka jars; install it")
        tmp = home / f"lib.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        log.info("fetching Apache Kafka %s jars with Maven into %s", KAFKA_VERSION, lib)
        t0 = time.monotonic()
        cmd = [mvn, "-q", "-B", "-f", str(POM), f"-Dkafka.version={KAFKA_VERSION}"]
        cmd += ["dependency:copy-dependencies", f"-DoutputDirectory={tmp}"]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            raise RuntimeError(f"mvn failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        shutil.rmtree(lib, ignore_errors=True)
        tmp.rename(lib)
        marker.write_text(f"{KAFKA_VERSION}\n")
        log.info("fetched %d jars in %.1fs", len(list(lib.glob("*.jar"))), time.monotonic() - t0)
    return lib


def _java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").exists():
        return str(Path(java_home) / "bin" / "java")
    java = shutil.which("java")
    if java is None:
        raise RuntimeError("Java 17+ is needed to run the Kafka broker; install a JRE")
    return java


# ----------------------------------------------------------------------------- addresses


def parse_bootstrap(bootstrap: str) -> tuple[str, int]:
    first = bootstrap.split(",")[0].strip()
    host, _, port = first.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"bootstrap must be host:port, got {bootstrap!r}")
    return host.strip("[]"), int(port)


def is_loopback(bootstrap: str) -> bool:
    """True if every server in the bootstrap list is on this machine's loopback."""
    for server in bootstrap.split(","):
        host, _ = parse_bootstrap(server)
        if host == "localhost":
            continue
        try:
            if not ipaddress.ip_address(host).is_loopback:
                return False
        except ValueError:
            return False
    return True


def _admin(bootstrap: str) -> AdminClient:
    # Quiet client: a broker that is down is an expected answer here, not log noise.
    return AdminClient({"bootstrap.servers": bootstrap, "log_level": 0, "logger": log})


def _port_open(bootstrap: str, timeout_s: float) -> bool:
    for server in bootstrap.split(","):
        with (
            contextlib.suppress(OSError),
            socket.create_connection(parse_bootstrap(server), timeout=timeout_s),
        ):
            return True
    return False


def answers(bootstrap: str, timeout_s: float = 2.0) -> bool:
    """True if a Kafka broker responds with metadata at `bootstrap`."""
    # A refused TCP connect answers at once; librdkafka would retry until the timeout.
    if not _port_open(bootstrap, min(timeout_s, 1.0)):
        return False
    try:
        return bool(_admin(bootstrap).list_topics(timeout=timeout_s).brokers)
    except KafkaException:
        return False


# ----------------------------------------------------------------------------- topics


def list_topics(bootstrap: str, timeout_s: float = 10.0) -> dict[str, int]:
    """Topic name -> partition count, internal topics excluded."""
    md = _admin(bootstrap).list_topics(timeout=timeout_s)
    return {
        name: len(t.partitions)
        for name, t in sorted(md.topics.items())
        if not name.startswith("__") and t.error is None
    }


def desired_partitions(partitions: Mapping[str, int] | None = None) -> dict[str, int]:
    """Project topics with their default counts, overridden (or extended) by `partitions`."""
    want = {name: t.partitions for name, t in TOPICS.items()}
    want.update(partitions or {})
    return want


def ensure_topics(
    bootstrap: str,
    partitions: Mapping[str, int] | None = None,
    *,
    include_defaults: bool = True,
    config: Mapping[str, str] | None = None,
    timeout_s: float = 30.0,
) -> dict[str, int]:
    """Create missing topics and grow partition counts that are too small (never shrinks).

    `partitions` overrides the defaults in `schemas.topics.TOPICS`; names not in TOPICS are
    created as given. With `include_defaults=False` only the named topics are handled. Returns
    name -> partition count after the call.
    """
    want = desired_partitions(partitions) if include_defaults else dict(partitions or {})
    for name, n in want.items():
        if n < 1:
            raise ValueError(f"topic {name!r}: partitions must be >= 1, got {n}")
    admin = _admin(bootstrap)
    have = list_topics(bootstrap, timeout_s)
    topic_config = {**TOPIC_CONFIG, **(config or {})}
    new = [
        NewTopic(name, n, 1, config=topic_config) for name, n in want.items() if name not in have
    ]
    grow = {
        name: NewPartitions(name, n) for name, n in want.items() if name in have and have[name] < n
    }
    for name, n in want.items():
        if name in have and have[name] > n:
            log.warning(
                "topic %s has %d partitions > configured %d; left as is", name, have[name], n
            )
    if new:
        for name, fut in admin.create_topics(new, operation_timeout=timeout_s).items():
            try:
                fut.result(timeout_s)
                log.info("created topic %s (%d partitions)", name, want[name])
            except KafkaException as exc:  # a concurrent creator won the race: fine
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise
    if grow:
        for name, fut in admin.create_partitions(list(grow.values())).items():
            fut.result(timeout_s)
            log.info("topic %s grown to %d partitions", name, want[name])
    result = _wait_for_topics(bootstrap, want, timeout_s)
    return {name: result[name] for name in want}


def _wait_for_topics(bootstrap: str, want: Mapping[str, int], timeout_s: float) -> dict[str, int]:
    # Creation is acknowledged by the controller before every metadata view has it.
    deadline = time.monotonic() + timeout_s
    while True:
        have = list_topics(bootstrap, timeout_s)
        if all(have.get(name, 0) >= n for name, n in want.items()):
            return have
        if time.monotonic() > deadline:
            missing = {n: have.get(n) for n in want if have.get(n, 0) < want[n]}
            raise TimeoutError(f"topics not ready after {timeout_s}s: {missing}")
        time.sleep(0.05)


def delete_topics(bootstrap: str, names: Iterable[str], timeout_s: float = 30.0) -> None:
    """Delete topics; names that do not exist are ignored."""
    names = list(names)
    if not names:
        return
    admin = _admin(bootstrap)  # must outlive the futures, or they fail with _DESTROY
    for fut in admin.delete_topics(names, operation_timeout=timeout_s).values():
        try:
            fut.result(timeout_s)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                raise


# ----------------------------------------------------------------------------- broker process


def _kafka_dir(data_dir: Path | str | None) -> Path:
    if data_dir is None:
        from schemas.config import data_dir as configured

        data_dir = configured()
    return Path(data_dir).resolve() / "kafka"


def _pid(kdir: Path) -> int | None:
    """Pid of our broker if its pid file names a live kafka.Kafka process."""
    try:
        pid = int((kdir / "broker.pid").read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if b"kafka.Kafka" in cmdline else None


def _write_config(kdir: Path, host: str, port: int) -> Path:
    host = f"[{host}]" if ":" in host else host  # IPv6 literal in listener URLs
    props = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "listeners": f"PLAINTEXT://{host}:{port},CONTROLLER://{host}:{port + 1}",
        "advertised.listeners": f"PLAINTEXT://{host}:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "controller.quorum.voters": f"1@{host}:{port + 1}",
        "log.dirs": str(kdir / "logs"),
        "auto.create.topics.enable": "false",
        "num.partitions": "1",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "4",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        "log.retention.ms": "-1",  # local dev/replay broker: keep history (see TOPIC_CONFIG)
        "num.network.threads": "2",
        "num.io.threads": "4",
    }
    path = kdir / "server.properties"
    path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
    (kdir / "log4j2.properties").write_text(_LOG4J2.format(log=kdir / "broker.log"))
    return path


def _format_storage(java: str, lib: Path, kdir: Path, props: Path) -> None:
    if (kdir / "logs" / "meta.properties").exists():
        return
    cluster_id = "-"
    while cluster_id[0] in "-_":  # an id starting with "-" reads as a flag to the tool's parser
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    cmd = [java, "-Xmx256m", "-cp", f"{lib}/*", "kafka.tools.StorageTool", "format"]
    cmd += ["-t", cluster_id, "-c", str(props)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"kafka storage format failed:\n{proc.stdout}\n{proc.stderr}")
    log.info("formatted KRaft storage in %s (cluster id %s)", kdir / "logs", cluster_id)


def _start(java: str, lib: Path, kdir: Path, props: Path) -> int:
    heap = os.environ.get("KAFKA_HEAP_OPTS", HEAP_OPTS).split()
    cmd = [java, *heap, "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-Djava.awt.headless=true"]
    cmd += [f"-Dlog4j2.configurationFile={kdir / 'log4j2.properties'}", "-cp", f"{lib}/*"]
    cmd += ["kafka.Kafka", str(props)]
    with (kdir / "broker.out").open("ab") as out:
        # New session: the broker outlives this process and ignores the terminal's Ctrl-C.
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=kdir,
            start_new_session=True,
        )
    (kdir / "broker.pid").write_text(f"{proc.pid}\n")
    _CHILDREN[proc.pid] = proc  # keep the handle: a collected Popen warns it is still running
    return proc.pid


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def up(
    bootstrap: str = DEFAULT_BOOTSTRAP,
    data_dir: Path | str | None = None,
    partitions: Mapping[str, int] | None = None,
    timeout_s: float = 120.0,
) -> str:
    """Make sure a broker answers at `bootstrap` (starting a local one if needed) with topics.

    A loopback bootstrap that does not answer gets a local KRaft broker under
    `<data_dir>/kafka` (jars fetched on first use, storage formatted once). A non-loopback
    bootstrap is only checked. Then the project topics are ensured. Returns `bootstrap`.
    """
    deadline = time.monotonic() + timeout_s
    if not answers(bootstrap):
        if not is_loopback(bootstrap):
            if not _wait_answers(bootstrap, deadline, pid=None, kdir=None):
                raise RuntimeError(f"no Kafka broker answers at {bootstrap} (not starting one)")
        else:
            _up_local(bootstrap, _kafka_dir(data_dir), deadline)
    ensure_topics(bootstrap, partitions, timeout_s=max(5.0, deadline - time.monotonic()))
    return bootstrap


def _up_local(bootstrap: str, kdir: Path, deadline: float) -> None:
    host, port = parse_bootstrap(bootstrap)
    if host == "localhost":
        host = "127.0.0.1"
    kdir.mkdir(parents=True, exist_ok=True)
    with _file_lock(kdir / ".up.lock"):
        pid = _pid(kdir)
        t0 = None
        if pid is None and not answers(bootstrap, 0.5):
            lib = ensure_jars()
            java = _java()
            props = _write_config(kdir, host, port)
            _format_storage(java, lib, kdir, props)
            t0 = time.monotonic()
            pid = _start(java, lib, kdir, props)
            log.info("started Kafka %s broker pid %d at %s", KAFKA_VERSION, pid, bootstrap)
        if not _wait_answers(bootstrap, deadline, pid, kdir):
            raise RuntimeError(
                f"Kafka broker at {bootstrap} did not answer in time; broker.out/broker.log:\n"
                f"{_tail(kdir / 'broker.out')}\n{_tail(kdir / 'broker.log')}"
            )
        if t0 is not None:
            log.info("broker answered after %.1fs", time.monotonic() - t0)


def _wait_answers(bootstrap: str, deadline: float, pid: int | None, kdir: Path | None) -> bool:
    while time.monotonic() < deadline:
        if answers(bootstrap, 1.0):
            return True
        if pid is not None and kdir is not None and not _alive(pid):
            raise RuntimeError(
                f"Kafka broker (pid {pid}) exited during startup:\n"
                f"{_tail(kdir / 'broker.out')}\n{_tail(kdir / 'broker.log')}"
            )
        time.sleep(0.2)
    return False


def _alive(pid: int) -> bool:
    # Not `_pid()`: right after Popen the child may not have exec'd java yet.
    child = _CHILDREN.get(pid)
    if child is not None:
        return child.poll() is None
    return Path(f"/proc/{pid}").exists() and not _is_zombie(pid)


def _reap(pid: int) -> None:
    # Only our own child can be reaped; a broker started by another process is not our zombie.
    child = _CHILDREN.get(pid)
    if child is not None and child.poll() is not None:
        del _CHILDREN[pid]


def down(data_dir: Path | str | None = None, timeout_s: float = 30.0) -> bool:
    """Stop the local broker (SIGTERM, then SIGKILL after `timeout_s`). True if one was running."""
    kdir = _kafka_dir(data_dir)
    pid = _pid(kdir)
    if pid is None:
        (kdir / "broker.pid").unlink(missing_ok=True)
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        _reap(pid)
        if _pid(kdir) is None or _is_zombie(pid):
            break
        time.sleep(0.1)
    else:
        log.warning("broker pid %d ignored SIGTERM for %.0fs; killing", pid, timeout_s)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
        _reap(pid)
    (kdir / "broker.pid").unlink(missing_ok=True)
    log.info("stopped Kafka broker pid %d", pid)
    return True


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")
    except (OSError, IndexError):
        return True


def status(
    bootstrap: str = DEFAULT_BOOTSTRAP, data_dir: Path | str | None = None
) -> dict[str, Any]:
    """Where the broker stands: answering?, local pid, files, and topics with partition counts."""
    kdir = _kafka_dir(data_dir)
    pid = _pid(kdir)
    running = answers(bootstrap)
    return {
        "bootstrap": bootstrap,
        "running": running,
        "pid": pid,
        "managed": pid is not None,  # started by `up` from this data dir
        "kafka_version": KAFKA_VERSION,
        "data_dir": str(kdir),
        "formatted": (kdir / "logs" / "meta.properties").exists(),
        "log_file": str(kdir / "broker.log"),
        "jars": str(kafka_home() / "lib"),
        "topics": list_topics(bootstrap) if running else {},
    }

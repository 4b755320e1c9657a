"""The commands of the fake Amazon Linux: dnf, aws, curl, systemctl, useradd, ss, shutdown, python3
(unzip when the test machine has none), installed by `install(WORLD)` into WORLD/bin, first on the boot
script's PATH.

Each is a small bash script (a Python start per call would slow every poll) that records its call
(WORLD/state/NAME.calls: one line per call, arguments separated by \x1f) and refuses arguments it
does not know (exit 2), so a boot script that starts using a command differently fails the tests
loudly instead of being faked wrongly. What needs Python is handed to this file (`python -I -S
fakes.py NAME WORLD ARGS...`, standard library only).

- curl: instance metadata (IMDSv2: a token first), the Datomic download (WORLD/datomic.zip, from
  the public bucket or https://downloads.example.test/; `--proto`/`--proto-redir` only `=https`),
  and real HTTP to loopback (the transactor's /health); anything else cannot be resolved (exit 6).
- aws: `ssm get-parameter` prints WORLD/parameter.txt; `s3 cp` copies the Datomic zip when the
  object is the one WORLD/s3-object names (else 403); the Auto Scaling and EC2 calls succeed.
- python3: the test's Python, the call recorded (the boot script's keyed digest).
- systemctl: a small systemd. `start` / `enable --now` really run the unit's ExecStart in the
  background, as systemd would expand it (EnvironmentFile, `$VAR` split into words, `${VAR}` one
  word), in the unit's WorkingDirectory, once its User exists (the process itself runs as root);
  is-active reports that process; when it exits, ExecStopPost runs. `enable` links the unit into
  its WantedBy target. `poweroff` is recorded, nothing more.
- dnf: `install` only; installing amazon-cloudwatch-agent adds its amazon-cloudwatch-agent-ctl
  under /opt/aws, which records its call and does nothing more.
- ss: `ss -Hltn "sport = :PORT"` from /proc/net/tcp{,6} (the namespace's own sockets).
- useradd appends to /etc/passwd and /etc/group (the namespace's overlay of /etc).
- chown and install (`install -d`), only in a user namespace (not root on the test machine), where
  root is the only user mapped: the owner each gives a path is appended to WORLD/state/owners
  (path, owner, -R or nothing; read by fake_al's `owner`), root's is also done, the rest as the
  machine's own commands do.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

# Every call starts a Python: the heavier modules are imported where they are used.

INSTANCE_ID = "i-0123456789abcdef0"
REGION = "us-east-1"
TOKEN = "fake-imds-token"
METADATA = {
    "instance-id": INSTANCE_ID,
    "placement/region": REGION,
    "local-ipv4": "10.0.1.23",
    # no public-ipv4: a private subnet, as most transactors run (alt-host falls back to host)
}
SYSTEMD = Path("/etc/systemd/system")


def refuse(name: str, args: list[str]) -> int:
    print(f"fake {name}: unexpected arguments {args!r}", file=sys.stderr)
    return 2


# ------------------------------------------------------------------------------------------- curl

_CURL_VALUE = {"-X", "-H", "-o", "-w", "--retry", "--max-time"}
_CURL_FLAGS = {"--retry-connrefused"}


def curl(world: Path, args: list[str]) -> int:
    """HTTP to loopback (the transactor's /health), where the machine has no real curl."""
    import urllib.error
    import urllib.request

    opts: dict[str, list[str]] = {}
    letters: set[str] = set()
    urls: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in _CURL_VALUE:
            opts.setdefault(arg, []).append(args[i + 1])
            i += 2
            continue
        if arg in _CURL_FLAGS:
            letters.add(arg)
        elif re.fullmatch(r"-[fsSL]+", arg):
            letters.update(arg[1:])
        elif arg.startswith("-"):
            return refuse("curl", args)
        else:
            urls.append(arg)
        i += 1
    if len(urls) != 1:
        return refuse("curl", args)
    method = opts.get("-X", ["GET"])[0]
    timeout = float(opts.get("--max-time", ["10"])[0])
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(urllib.request.Request(urls[0], method=method), timeout=timeout) as r:
            status, body = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, body = e.code, e.read()
    except (urllib.error.URLError, OSError) as e:
        if "-w" in opts:  # -w prints the code even when nothing answered
            print("000", end="")
        if "S" in letters:
            print(f"curl: (7) Failed to connect: {e}", file=sys.stderr)
        return 7
    if "f" in letters and status >= 400:
        if "S" in letters:
            print(f"curl: (22) The requested URL returned error: {status}", file=sys.stderr)
        return 22
    out = opts.get("-o", ["-"])[0]
    if out == "-":
        sys.stdout.buffer.write(body)
    else:
        Path(out).write_bytes(body)
    for fmt in opts.get("-w", []):
        print(fmt.replace("%{http_code}", f"{status:03d}"), end="")
    sys.stdout.flush()
    return 0


# -------------------------------------------------------------------------------------- systemctl


def parse_unit(path: Path) -> dict[str, list[str]]:
    """`Section.Key` -> every value given (systemd allows repeated keys)."""
    out: dict[str, list[str]] = {}
    section = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        out.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return out


def read_environment_file(path: str) -> dict[str, str]:
    optional = path.startswith("-")
    file = Path(path.lstrip("-"))
    if not file.exists():
        if optional:
            return {}
        raise FileNotFoundError(file)
    env = {}
    for line in file.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        key, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        env[key.strip()] = value
    return env


def expand_command(line: str, env: dict[str, str]) -> list[str]:
    """systemd's ExecStart: `$VAR` alone is split into words, `${VAR}` is substituted in place."""
    import shlex

    line = line.lstrip("+-@!:")
    words: list[str] = []
    for word in shlex.split(line):
        alone = re.fullmatch(r"\$([A-Za-z_][A-Za-z0-9_]*)", word)
        if alone:
            words.extend(env.get(alone.group(1), "").split())
            continue
        words.append(
            re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", lambda m: env.get(m.group(1), ""), word)
        )
    return words


def unit_state(world: Path, unit: str) -> Path:
    return world / "state" / "units" / f"{unit}.json"


def set_state(world: Path, job: dict[str, Any]) -> None:
    """The job, and its state word alone for the shell `systemctl is-active`."""
    unit = job["unit"]
    unit_state(world, unit).write_text(json.dumps(job))
    word = world / "state" / "units" / f"{unit}.state"
    (word.parent / f"{unit}.state.tmp").write_text(job["state"])
    os.replace(word.parent / f"{unit}.state.tmp", word)


def start_unit(world: Path, unit: str) -> int:
    import pwd
    import subprocess

    path = SYSTEMD / unit
    if not path.exists():
        print(f"Failed to start {unit}: Unit {unit} not found.", file=sys.stderr)
        return 5
    spec = parse_unit(path)
    user = spec.get("Service.User", ["root"])[-1]
    try:
        pwd.getpwnam(user)
    except KeyError:
        print(f"Failed to start {unit}: user {user} does not exist (217/USER)", file=sys.stderr)
        return 1
    cwd = spec.get("Service.WorkingDirectory", ["/"])[-1]
    if not Path(cwd).is_dir():
        print(f"Failed to start {unit}: no {cwd} (200/CHDIR)", file=sys.stderr)
        return 1
    env = {"PATH": os.environ["PATH"], "LANG": "C.UTF-8", "USER": user}
    for file in spec.get("Service.EnvironmentFile", []):
        env.update(read_environment_file(file))
    (start,) = spec["Service.ExecStart"]
    job = {
        "unit": unit,
        "user": user,
        "cwd": cwd,
        "env": env,
        "argv": expand_command(start, env),
        "stop_post": [expand_command(c, env) for c in spec.get("Service.ExecStopPost", [])],
        "state": "active",
    }
    unit_state(world, unit).parent.mkdir(exist_ok=True)
    set_state(world, job)
    journal = open(world / "state" / "units" / f"{unit}.log", "ab")  # noqa: SIM115 (handed over)
    subprocess.Popen(
        [sys.executable, "-S", __file__, "__supervise", str(world), unit],
        stdin=subprocess.DEVNULL,
        stdout=journal,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return 0


def supervise(world: Path, unit: str) -> int:
    import subprocess

    job = json.loads(unit_state(world, unit).read_text())
    done = subprocess.run(
        job["argv"], cwd=job["cwd"], env=job["env"], stdin=subprocess.DEVNULL, check=False
    )
    job.update(state="failed" if done.returncode else "inactive", returncode=done.returncode)
    set_state(world, job)
    for argv in job["stop_post"]:
        subprocess.run(argv, env=job["env"], stdin=subprocess.DEVNULL, check=False)
    return 0


def enable_unit(unit: str) -> int:
    path = SYSTEMD / unit
    if not path.exists():
        print(f"Failed to enable unit: Unit file {unit} does not exist.", file=sys.stderr)
        return 1
    for target in parse_unit(path).get("Install.WantedBy", []):
        wants = SYSTEMD / f"{target}.wants"
        wants.mkdir(exist_ok=True)
        link = wants / unit
        if not link.is_symlink():
            link.symlink_to(path)
            print(f"Created symlink {link} -> {path}.", file=sys.stderr)
    return 0


def systemctl(world: Path, args: list[str]) -> int:
    """start and enable (the shell front answers the rest)."""
    words = [a for a in args if a not in ("--now",)]
    command, units = words[0], words[1:]
    if command not in ("start", "enable") or not units:
        return refuse("systemctl", args)
    for unit in units:
        if command == "enable" and (rc := enable_unit(unit)):
            return rc
        if (command == "start" or "--now" in args) and (rc := start_unit(world, unit)):
            return rc
    return 0


def unzip(world: Path, args: list[str]) -> int:
    """Only where the test machine has no unzip: `unzip -q ZIP -d DIR`, file modes kept."""
    import zipfile

    if len(args) != 4 or args[0] != "-q" or args[2] != "-d":
        return refuse("unzip", args)
    with zipfile.ZipFile(args[1]) as z:
        for info in z.infolist():
            target = Path(z.extract(info, args[3]))
            mode = info.external_attr >> 16
            if mode and not info.is_dir():
                target.chmod(mode & 0o7777)
    return 0


PYTHON_COMMANDS = {"curl": curl, "systemctl": systemctl, "unzip": unzip}

# The shell fronts: every command records its call (arguments separated by \x1f, one call a line,
# in one write) and answers; the few things worth Python are handed to this file.
_PRELUDE = """#!/bin/bash
set -u
readonly WORLD=@WORLD@
readonly PYTHON=(@PYTHON@ -I -S @FAKES@)
record() {
  local line
  printf -v line '%s\\x1f' "$@"
  printf '%s\\n' "$line" >>"$WORLD/state/$NAME.calls"
}
refuse() {
  echo "fake $NAME: unexpected arguments: $*" >&2
  exit 2
}
record "$@"
"""

_SHELL = {
    "aws": """
case "${1-} ${2-}" in
  "ssm get-parameter")
    [[ " $* " == *" --with-decryption "* && " $* " == *" --output text "* ]] || refuse "$@"
    cat "$WORLD/parameter.txt"
    echo
    ;;
  "s3 cp")
    # `s3 cp --only-show-errors --region R s3://BUCKET/KEY FILE` with the instance role: the
    # object of WORLD/s3-object (a test's bucket), absent otherwise.
    [ $# -eq 7 ] && [ "$3" = --only-show-errors ] && [ "$4" = --region ] || refuse "$@"
    [[ $6 == s3://* ]] || refuse "$@"
    [ -f "$WORLD/s3-object" ] && [ "$6" = "$(cat "$WORLD/s3-object")" ] || {
      echo "fatal error: An error occurred (403) when calling the HeadObject operation: Forbidden" >&2
      exit 1
    }
    cp "$WORLD/datomic.zip" "$7"
    ;;
  "autoscaling complete-lifecycle-action" | "autoscaling record-lifecycle-action-heartbeat" | \\
    "autoscaling set-instance-health" | "ec2 create-tags") ;;
  *) refuse "$@" ;;
esac
""",
    # The machine's Python (the boot script computes the keyed digest with it), its calls
    # recorded like every other command's: what each was given on its command line.
    "python3": """
exec "${PYTHON[0]}" "$@"
""",
    # Installing amazon-cloudwatch-agent puts its control command where the package does; that
    # one only records its call (the agent's configuration stays in the instance's /opt).
    "dnf": """
[ "${1-}" = install ] || refuse "$@"
if [[ " $* " == *" amazon-cloudwatch-agent "* ]]; then
  ctl=/opt/aws/amazon-cloudwatch-agent/bin/amazon-cloudwatch-agent-ctl
  mkdir -p "${ctl%/*}"
  printf '#!/bin/bash\nexec %q "$@"\n' "$WORLD/bin/amazon-cloudwatch-agent-ctl" >"$ctl"
  chmod 755 "$ctl"
fi
""",
    # WORLD/agent-fails makes it fail, as an agent that cannot start would.
    "amazon-cloudwatch-agent-ctl": """
[ ! -e "$WORLD/agent-fails" ] || exit 1
""",
    "shutdown": "",
    "useradd": """
name=${!#} home=/home/${!#} shell=/bin/bash
while [ $# -gt 1 ]; do
  case $1 in
    --home-dir) home=$2; shift ;;
    --shell) shell=$2; shift ;;
  esac
  shift
done
echo "$name:x:990:" >>/etc/group
echo "$name:x:990:990::$home:$shell" >>/etc/passwd
""",
    # The namespace's own listening sockets, from /proc/net (only the form the scripts use).
    "ss": """
[ $# -eq 2 ] && [ "$1" = -Hltn ] && [[ $2 =~ ^sport\\ =\\ :([0-9]+)$ ]] || refuse "$@"
port=${BASH_REMATCH[1]}
awk -v hex="$(printf '%04X' "$port")" -v port="$port" \\
  'FNR > 1 && $4 == "0A" { n = split($2, a, ":"); if (a[n] == hex) print "LISTEN 0 50 *:" port " *:*" }' \\
  /proc/net/tcp /proc/net/tcp6
""",
    "systemctl": """
args=()
for a in "$@"; do
  case $a in --quiet | --no-block) ;; *) args+=("$a") ;; esac
done
case "${args[*]}" in
  daemon-reload | poweroff) ;;
  "is-active "*)
    [ ${#args[@]} -eq 2 ] || refuse "$@"
    state=$(cat "$WORLD/state/units/${args[1]}.state" 2>/dev/null || echo inactive)
    [[ " $* " == *" --quiet "* ]] || echo "$state"
    [ "$state" = active ]
    ;;
  "start "* | "enable "*) exec "${PYTHON[@]}" systemctl "$WORLD" "$@" ;;
  *) refuse "$@" ;;
esac
""",
    # Instance metadata (IMDSv2: a token first), the Datomic download; loopback HTTP (/health)
    # goes to the machine's curl, or to fakes.py where there is none.
    "curl": """
url= method=GET out=- token=
args=("$@")
while [ $# -gt 0 ]; do
  case $1 in
    -X) method=$2; shift ;;
    -H) [[ $2 == "X-aws-ec2-metadata-token: "* ]] && token=${2#*: }; shift ;;
    -o) out=$2; shift ;;
    -w | --retry | --max-time) shift ;;
    --proto | --proto-redir) [ "$2" = =https ] || refuse "${args[@]}"; shift ;;
    --retry-connrefused) ;;
    -[fsSL]*) [[ $1 =~ ^-[fsSL]+$ ]] || refuse "${args[@]}" ;;
    -*) refuse "${args[@]}" ;;
    *) url=$1 ;;
  esac
  shift
done
emit() { if [ "$out" = - ]; then printf '%s' "$1"; else printf '%s' "$1" >"$out"; fi; }
case $url in
  http://169.254.169.254/latest/api/token)
    [ "$method" = PUT ] || exit 22
    emit @TOKEN@
    ;;
  http://169.254.169.254/latest/meta-data/*)
    [ "$token" = @TOKEN@ ] || exit 22 # IMDSv2 only: the launch template requires tokens
    case ${url#*/meta-data/} in
@METADATA@
      *) exit 22 ;;
    esac
    ;;
  https://datomic-pro-downloads.s3.amazonaws.com/*/datomic-pro-*.zip | https://downloads.example.test/*)
    cp "$WORLD/datomic.zip" "$out"
    ;;
  http://127.0.0.1[:/]* | http://localhost[:/]* | "http://[::1]"[:/]*)
    for real in /usr/bin/curl /bin/curl; do
      [ -x "$real" ] && exec "$real" "${args[@]}"
    done
    exec "${PYTHON[@]}" curl "$WORLD" "${args[@]}"
    ;;
  *)
    echo "curl: (6) Could not resolve host: $url" >&2
    exit 6
    ;;
esac
""",
}


# In a user namespace only root is mapped (a chown to datomic fails with EINVAL): who owns what
# is recorded, root's ownership is also done.
_OWN = """
real() {
  local command
  for command in "/usr/bin/$1" "/bin/$1"; do
    if [ -x "$command" ]; then
      shift
      "$command" "$@"
      return
    fi
  done
  echo "fake $NAME: no $1 on this machine" >&2
  exit 127
}
own() { # OWNER[:GROUP] -R|"" PATH...
  local owner=$1 recursive=$2 path
  shift 2
  id -u "${owner%%:*}" >/dev/null 2>&1 \\
    || { echo "$NAME: invalid user: '${owner%%:*}'" >&2; exit 1; }
  [[ $owner != *:* ]] || getent group "${owner#*:}" >/dev/null \\
    || { echo "$NAME: invalid group: '${owner#*:}'" >&2; exit 1; }
  if [ "$(id -u "${owner%%:*}")" = 0 ]; then
    real chown ${recursive:+"$recursive"} "$owner" "$@" || exit
  fi
  for path in "$@"; do
    printf '%s\\x1f%s\\x1f%s\\n' "$(realpath -m -- "$path")" "$owner" "$recursive" \\
      >>"$WORLD/state/owners"
  done
}
"""

_USER_NAMESPACE_SHELL = {
    "chown": _OWN
    + """
recursive=
if [ "${1-}" = -R ]; then
  recursive=-R
  shift
fi
[ $# -ge 2 ] && [[ $1 != -* ]] || refuse "$@"
owner=$1
shift
for path in "$@"; do
  [ -e "$path" ] || { echo "chown: cannot access '$path': No such file or directory" >&2; exit 1; }
done
own "$owner" "$recursive" "$@"
""",
    "install": _OWN
    + """
all=("$@") args=() paths=() owner='' group='' folders=''
while [ $# -gt 0 ]; do
  case $1 in
    -d) folders=-d; args+=(-d) ;;
    -m) args+=(-m "$2"); shift ;;
    -o) owner=$2; shift ;;
    -g) group=$2; shift ;;
    -*) refuse "${all[@]}" ;;
    *) paths+=("$1") ;;
  esac
  shift
done
[ -n "$folders" ] && [ ${#paths[@]} -gt 0 ] || refuse "${all[@]}"
real install "${args[@]}" "${paths[@]}" || exit
if [ -n "$owner$group" ]; then
  own "${owner:-root}${group:+:$group}" "" "${paths[@]}"
fi
""",
}


def install(world: Path, user_namespace: bool = False) -> None:
    """The fake commands in WORLD/bin (unzip only when the machine lacks one; chown and install
    in a user namespace)."""
    import shlex
    import shutil

    bin_dir = world / "bin"
    bin_dir.mkdir()
    metadata = "\n".join(
        f"      {shlex.quote(k)}) emit {shlex.quote(v)} ;;" for k, v in METADATA.items()
    )
    commands = dict(_SHELL, **(_USER_NAMESPACE_SHELL if user_namespace else {}))
    for name, body in commands.items():
        text = _PRELUDE.replace("@WORLD@", shlex.quote(str(world))).replace(
            "@PYTHON@", shlex.quote(sys.executable)
        ).replace("@FAKES@", shlex.quote(__file__)).replace(
            "readonly WORLD", f"readonly NAME={name}\nreadonly WORLD"
        ) + body.replace("@TOKEN@", TOKEN).replace("@METADATA@", metadata)
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    if not shutil.which("unzip"):
        (bin_dir / "unzip").write_text(
            f"#!/bin/sh\nexec {shlex.quote(sys.executable)} -I -S {shlex.quote(__file__)} "
            f'unzip {shlex.quote(str(world))} "$@"\n'
        )
        (bin_dir / "unzip").chmod(0o755)


def main(argv: list[str]) -> int:
    if argv[1] == "__supervise":
        return supervise(Path(argv[2]), argv[3])
    name, world = argv[1], Path(argv[2])
    return PYTHON_COMMANDS[name](world, argv[3:])


if __name__ == "__main__":
    sys.exit(main(sys.argv))

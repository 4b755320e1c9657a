#!/bin/bash
# Datomic Pro transactor boot script, run once as root by cloud-init (EC2 user data).
#
# Rendered by `datomic-aws create-cf-template` from datomic_aws/boot/transactor-boot.sh: the
# placeholders (two at-signs and a NAME) become quoted values. It holds no transactor configuration
# and no secret: the configuration is read from SSM Parameter Store at boot, into a file only the
# transactor can read, and is never printed.
#
# Steps: install Amazon Corretto 21; download the pinned Datomic Pro release (HTTPS only, or S3;
# SHA-256 verified); read the configuration from SSM; add host/alt-host from instance metadata
# (IMDSv2) and Datomic's health endpoint (ping-host/ping-port, unless the operator set them); run
# bin/transactor under systemd (enabled), with a second unit that publishes the transactor's HA role
# as an instance tag; tell Auto Scaling the instance is ready once the transactor process is alive
# and /health answers, for an active and for a standby alike (a launch lifecycle hook holds the
# instance in Pending:Wait until then), or abandon the launch and power off. When the transactor
# exits, the instance marks itself Unhealthy and powers off; the launch template terminates on
# shutdown, so Auto Scaling starts a fresh instance: the transactor fails fast, as Datomic's own
# AMI did.
set -Eeuo pipefail
umask 077
# This script's own process (fail() tells it from its subshells). Not `$` twice: moto's Fn::Sub
# with a variable map reads that as an escaped `$` (AWS does not).
readonly BOOT_PID=$BASHPID

# The configuration this launch template was built for: `<SSM parameter version>:<keyed digest>`.
# The digest is an HMAC-SHA256 under a key that only the configuration itself holds
# (datomic-aws-digest-secret), so it tells a reader of the user data nothing about the
# configuration. It is part of the launch template, so a configuration change makes a new launch
# template version; self-healing launches of an older version keep booting their configuration.
readonly CONFIG_PIN=@@CONFIG_PIN
readonly CONFIG_VERSION=${CONFIG_PIN%%:*}
readonly CONFIG_DIGEST=${CONFIG_PIN#*:}
readonly SYSTEM=@@SYSTEM
readonly CONFIG_REGION=@@CONFIG_REGION
readonly SSM_PARAMETER=@@SSM_PARAMETER
readonly GROUP_NAME=@@GROUP_NAME
readonly HOOK_NAME=@@HOOK_NAME
readonly ROLE_TAG=@@ROLE_TAG
readonly ROLE_ACTIVE=@@ROLE_ACTIVE
readonly ROLE_STANDBY=@@ROLE_STANDBY
readonly DATOMIC_VERSION=@@DATOMIC_VERSION
readonly DOWNLOAD_URL=@@DOWNLOAD_URL
readonly ZIP_SHA256=@@ZIP_SHA256
readonly XMX=@@XMX
readonly JAVA_OPTS=@@JAVA_OPTS
# Counted from the start of this script (bash SECONDS); below the launch hook's heartbeat timeout.
readonly READY_TIMEOUT_SECONDS=@@READY_TIMEOUT_SECONDS
readonly POLL_SECONDS=@@POLL_SECONDS
readonly HEARTBEAT_EVERY_SECONDS=@@HEARTBEAT_EVERY_SECONDS
readonly ROLE_POLL_SECONDS=@@ROLE_POLL_SECONDS

readonly INSTALL_ROOT=/opt/datomic
readonly HELPER=/opt/datomic/bin/datomic-instance
readonly INSTANCE_ENV=/opt/datomic/instance.env
readonly CONFIG_DIR=/etc/datomic
readonly CONFIG_FILE=/etc/datomic/transactor.properties
readonly JVM_ENV_FILE=/etc/datomic/jvm.env
readonly UNIT=datomic-transactor.service
readonly ROLE_UNIT=datomic-role.service
readonly IMDS=http://169.254.169.254/latest
# Datomic's health endpoint (reference §10), on loopback unless the operator's configuration says.
readonly DEFAULT_PING_HOST=127.0.0.1
readonly DEFAULT_PING_PORT=9999

INSTANCE_ID=
INSTANCE_REGION=

# Progress to the cloud-init log (stdout) and to the console. Never given configuration values.
log() {
  printf 'datomic-boot: %s\n' "$*"
  { printf 'datomic-boot: %s\n' "$*" >/dev/console; } 2>/dev/null || true
}

# IMDSv2 only (the launch template requires tokens): a session token first, then the read.
imds() {
  local token
  token=$(curl -fsS --retry 5 --retry-connrefused -X PUT "$IMDS/api/token" \
    -H 'X-aws-ec2-metadata-token-ttl-seconds: 300')
  curl -fsS --retry 5 --retry-connrefused -H "X-aws-ec2-metadata-token: $token" \
    "$IMDS/meta-data/$1"
}

# The value Java reads for a key of a properties file: the last `key=v`, `key: v` or `key v` line.
property() {
  sed -n "s/^[[:space:]]*$1[[:space:]]*[=:[:space:]][[:space:]]*\([^[:space:]]*\).*\$/\1/p" \
    "$2" | tail -n 1
}

# Best effort: an instance started outside the launch hook has no pending action to complete.
complete_launch() {
  if [ -z "$INSTANCE_ID" ] || [ -z "$INSTANCE_REGION" ]; then
    return 0
  fi
  aws autoscaling complete-lifecycle-action --region "$INSTANCE_REGION" \
    --auto-scaling-group-name "$GROUP_NAME" --lifecycle-hook-name "$HOOK_NAME" \
    --instance-id "$INSTANCE_ID" --lifecycle-action-result "$1" >/dev/null 2>&1 \
    || log "no pending launch lifecycle action to complete with $1"
}

# Extends the launch hook's timeout while this script installs and downloads (reference §11).
# Best effort: before the packages are installed `aws` may be missing, and outside the hook there
# is no action to extend.
heartbeat() {
  if [ -z "$INSTANCE_ID" ] || [ -z "$INSTANCE_REGION" ]; then
    return 0
  fi
  aws autoscaling record-lifecycle-action-heartbeat --region "$INSTANCE_REGION" \
    --auto-scaling-group-name "$GROUP_NAME" --lifecycle-hook-name "$HOOK_NAME" \
    --instance-id "$INSTANCE_ID" >/dev/null 2>&1 || true
}

fail() {
  # set -E runs the ERR trap in command substitutions too: leave the report to the main shell.
  [ "$BASHPID" = "$BOOT_PID" ] || exit 1
  trap - ERR
  log "boot failed: $*; abandoning the launch and powering off"
  complete_launch ABANDON
  systemctl --no-block poweroff || shutdown -h now
  exit 1
}
trap 'fail "command failed at line $LINENO"' ERR

INSTANCE_ID=$(imds instance-id)
INSTANCE_REGION=$(imds placement/region)
readonly INSTANCE_ID INSTANCE_REGION
log "system $SYSTEM, instance $INSTANCE_ID, Datomic Pro $DATOMIC_VERSION, configuration version $CONFIG_VERSION"
heartbeat

# 1. A Java LTS that Datomic Pro supports, and the tools this script uses.
log "installing Amazon Corretto 21"
dnf install -y -q java-21-amazon-corretto-headless unzip awscli-2 iproute python3
heartbeat

# 2. Datomic Pro, the pinned release: from S3 with the instance role, or HTTPS only; verified.
url=$DOWNLOAD_URL
if [ -z "$url" ]; then
  url="https://datomic-pro-downloads.s3.amazonaws.com/$DATOMIC_VERSION/datomic-pro-$DATOMIC_VERSION.zip"
fi
log "downloading $url"
zip=$(mktemp --suffix=.zip)
s3cp() { aws s3 cp --only-show-errors --region "$INSTANCE_REGION" "$url" "$zip"; }
case $url in
  # Twice: IAM takes a moment to apply a new grant (reference §11).
  s3://*) s3cp || { sleep 10 && s3cp; } || fail "cannot read $url with the instance role" ;;
  *) curl -fsSL --proto =https --proto-redir =https --retry 5 --retry-connrefused -o "$zip" "$url" ;;
esac
if [ -n "$ZIP_SHA256" ]; then
  printf '%s  %s\n' "$ZIP_SHA256" "$zip" | sha256sum --check --strict --quiet - \
    || fail "the SHA-256 of $url is not the pinned one"
  log "verified the SHA-256 of $url"
else
  log "downloaded $url (no SHA-256 known: not verified)"
fi
heartbeat
id -u datomic >/dev/null 2>&1 \
  || useradd --system --home-dir "$INSTALL_ROOT" --no-create-home --shell /sbin/nologin datomic
staging=$(mktemp -d)
unzip -q "$zip" -d "$staging"
rm -f "$zip"
transactor=$(find "$staging" -mindepth 3 -maxdepth 3 -path '*/bin/transactor' -type f | head -n 1)
[ -n "$transactor" ] || fail "no bin/transactor in $url"
release=$(dirname "$(dirname "$transactor")")
# /opt/datomic and its bin/ stay root's: systemd runs bin/datomic-instance as root when the
# transactor exits. The release (unzipped by root) too: read-only to the transactor (see step 5).
install -d -m 755 -o root -g root "$INSTALL_ROOT" "$INSTALL_ROOT/bin"
rm -rf "${INSTALL_ROOT:?}/release"
mv "$release" "$INSTALL_ROOT/release"
rm -rf "$staging"
chmod -R u+rwX,go=rX "$INSTALL_ROOT/release"

# 3. The configuration, from SSM, readable by the transactor only and never printed: the version
# this launch template was built for (GetParameter reads `name:version`, reference §11), refused
# unless its keyed digest is the pinned one.
install -d -m 700 -o datomic -g datomic "$CONFIG_DIR"
config=$(mktemp "$CONFIG_DIR/.transactor.XXXXXX")
aws ssm get-parameter --region "$CONFIG_REGION" --name "$SSM_PARAMETER:$CONFIG_VERSION" \
  --with-decryption --query Parameter.Value --output text >"$config" \
  || fail "cannot read version $CONFIG_VERSION of $SSM_PARAMETER in $CONFIG_REGION"
# The digest covers the value without its trailing newlines (the text output adds one). Its key
# goes over a pipe (printf is a builtin), never on a command line (/proc/*/cmdline).
digest_key=$(property datomic-aws-digest-secret "$config")
hmac='import hashlib as h,hmac,os,sys;print(hmac.new(bytes.fromhex(os.fdopen(3).read()),'
hmac+='sys.stdin.buffer.read(),h.sha256).hexdigest())'
digest=$(printf '%s' "$(<"$config")" | python3 -IS -c "$hmac" 3< <(printf '%s' "$digest_key"))
unset digest_key
[ "$digest" = "$CONFIG_DIGEST" ] \
  || fail "version $CONFIG_VERSION of $SSM_PARAMETER is not the configuration of this launch template"
log "configuration: version $CONFIG_VERSION of $SSM_PARAMETER (keyed digest verified)"
local_ip=$(imds local-ipv4)
public_ip=$(imds public-ipv4 2>/dev/null || true)
port=$(property port "$config")
port=${port:-4334}
ping_host=$(property ping-host "$config")
ping_port=$(property ping-port "$config")
{
  # Peers reach the active transactor at host, or at alt-host when host is not routable for them.
  printf '\nhost=%s\nalt-host=%s\n' "$local_ip" "${public_ip:-$local_ip}"
  # The health endpoint answers for both roles (reference §10); the operator's own values win.
  [ -n "$ping_host" ] || printf 'ping-host=%s\n' "$DEFAULT_PING_HOST"
  [ -n "$ping_port" ] || printf 'ping-port=%s\n' "$DEFAULT_PING_PORT"
} >>"$config"
ping_host=${ping_host:-$DEFAULT_PING_HOST}
ping_port=${ping_port:-$DEFAULT_PING_PORT}
case $ping_host in
  *:*) ping_url="http://[$ping_host]:$ping_port/health" ;;
  *) ping_url="http://$ping_host:$ping_port/health" ;;
esac
chown datomic:datomic "$config"
chmod 600 "$config"
mv -f "$config" "$CONFIG_FILE"

# 4. The instance helper: the readiness check, the role tag loop, leaving the group. Root-owned: the
# transactor unit runs its leave-group as root.
printf '%s=%q\n' INSTANCE_ID "$INSTANCE_ID" INSTANCE_REGION "$INSTANCE_REGION" \
  ROLE_TAG "$ROLE_TAG" ROLE_ACTIVE "$ROLE_ACTIVE" ROLE_STANDBY "$ROLE_STANDBY" \
  PING_URL "$ping_url" PORT "$port" ROLE_POLL_SECONDS "$ROLE_POLL_SECONDS" >"$INSTANCE_ENV"
chmod 644 "$INSTANCE_ENV"
cat >"$HELPER" <<'HELPER'
#!/bin/bash
# datomic-aws instance helper, written at boot by the user data (datomic_aws/boot/transactor-boot.sh).
#   healthy       the transactor's health endpoint answers 2xx (an active or a standby)
#   publish-role  keeps this instance's role tag current (run by datomic-role.service)
#   leave-group   the transactor exited: mark this instance Unhealthy, power off (ExecStopPost)
set -uo pipefail
# shellcheck source=/dev/null
. /opt/datomic/instance.env

log() {
  printf 'datomic-instance: %s\n' "$*"
  { printf 'datomic-instance: %s\n' "$*" >/dev/console; } 2>/dev/null || true
}

healthy() {
  local code
  code=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 5 "$PING_URL" 2>/dev/null) || return 1
  case $code in
    2??) return 0 ;;
    *) return 1 ;;
  esac
}

# Datomic binds its port only once active; a standby never does (reference §10).
listening() {
  [ -n "$(ss -Hltn "sport = :$PORT")" ]
}

# The tag changes only when the role does: a standby that takes over becomes active.
publish_role() {
  local role published=
  while true; do
    role=
    if healthy; then
      if listening; then role=$ROLE_ACTIVE; else role=$ROLE_STANDBY; fi
    fi
    if [ -n "$role" ] && [ "$role" != "$published" ]; then
      if aws ec2 create-tags --region "$INSTANCE_REGION" --resources "$INSTANCE_ID" \
        --tags "Key=$ROLE_TAG,Value=$role" >/dev/null; then
        published=$role
        log "transactor role: $role ($ROLE_TAG tag of $INSTANCE_ID)"
      else
        log "could not set the $ROLE_TAG tag to $role; retrying"
      fi
    fi
    sleep "$ROLE_POLL_SECONDS"
  done
}

# Fail fast, as Datomic's AMI did: Unhealthy makes Auto Scaling replace the instance at once, and
# the launch template terminates the instance on shutdown (reference §11).
leave_group() {
  log "the transactor exited; marking $INSTANCE_ID Unhealthy and powering off"
  aws autoscaling set-instance-health --region "$INSTANCE_REGION" --instance-id "$INSTANCE_ID" \
    --health-status Unhealthy --no-should-respect-grace-period >/dev/null 2>&1 \
    || log "could not mark $INSTANCE_ID Unhealthy (not in service yet?)"
  systemctl --no-block poweroff || shutdown -h now
}

case ${1-} in
  healthy) healthy ;;
  publish-role) publish_role ;;
  leave-group) leave_group ;;
  *)
    echo "usage: $0 healthy|publish-role|leave-group" >&2
    exit 2
    ;;
esac
HELPER
chmod 755 "$HELPER"

# 5. The transactor under systemd, enabled. bin/transactor takes -Xms/-Xmx from its arguments and
# appends any other argument to $JAVA_OPTS from its environment (reference §10): the heap goes in
# the arguments, the JVM options in the environment only, so each is passed once.
printf 'JAVA_OPTS=%s\n' "$JAVA_OPTS" >"$JVM_ENV_FILE"
chmod 644 "$JVM_ENV_FILE"
# Its data-dir and log-dir (relative: in the release, where it runs) are all it may write.
for k in data log; do
  f=$(property $k-dir "$CONFIG_FILE") && f=${f:-$k} && [[ $f = /* ]] || f=$INSTALL_ROOT/release/$f
  install -d -m 750 -o datomic -g datomic "$f"
  rw+=" $f"
done
cat >"/etc/systemd/system/$UNIT" <<UNIT
[Unit]
Description=Datomic Pro transactor (datomic-aws)
Wants=network-online.target
After=network-online.target

[Service]
Type=simple
User=datomic
Group=datomic
WorkingDirectory=/opt/datomic/release
EnvironmentFile=/etc/datomic/jvm.env
ExecStart=/opt/datomic/release/bin/transactor -Xms$XMX -Xmx$XMX /etc/datomic/transactor.properties
ExecStopPost=+/opt/datomic/bin/datomic-instance leave-group
Restart=no
LimitNOFILE=65536
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectControlGroups=yes
RestrictSUIDSGID=yes
ReadWritePaths=$rw

[Install]
WantedBy=multi-user.target
UNIT
cat >"/etc/systemd/system/$ROLE_UNIT" <<'UNIT'
[Unit]
Description=Publishes the Datomic transactor's HA role as an instance tag (datomic-aws)
Wants=network-online.target
After=network-online.target datomic-transactor.service

[Service]
Type=simple
User=datomic
Group=datomic
ExecStart=/opt/datomic/bin/datomic-instance publish-role
Restart=always
RestartSec=5

[Install]
WantedBy=multi-user.target
UNIT
systemctl daemon-reload
systemctl enable --now "$UNIT"
systemctl enable --now "$ROLE_UNIT"
log "transactor started; waiting for $ping_url (deadline ${READY_TIMEOUT_SECONDS}s from boot)"

# 6. Ready once the process is alive and its health endpoint answers: that holds for a standby too,
# which never binds its port (reference §10).
last_heartbeat=$SECONDS
until "$HELPER" healthy; do
  systemctl is-active --quiet "$UNIT" || fail "the transactor exited before it was ready"
  [ "$SECONDS" -lt "$READY_TIMEOUT_SECONDS" ] \
    || fail "no answer from $ping_url within ${READY_TIMEOUT_SECONDS}s of boot"
  if [ $((SECONDS - last_heartbeat)) -ge "$HEARTBEAT_EVERY_SECONDS" ]; then
    heartbeat
    last_heartbeat=$SECONDS
  fi
  sleep "$POLL_SECONDS"
done
systemctl is-active --quiet "$UNIT" || fail "the transactor exited before it was ready"
trap - ERR
log "transactor ready ($ping_url answers; port $port)"
complete_launch CONTINUE

#!/bin/bash
# Datomic Pro transactor boot script, run once as root by cloud-init (EC2 user data).
#
# Rendered by `datomic-aws create-cf-template` from datomic_aws/boot/transactor-boot.sh: the
# placeholders (two at-signs and a NAME) become quoted values. It holds no transactor configuration
# and no secret: the configuration is read from SSM Parameter Store at boot, into a file only the
# transactor can read.
#
# Steps: install Amazon Corretto 21; download the pinned Datomic Pro release (verified when a
# SHA-256 is given); read the configuration from SSM; add host/alt-host from instance metadata
# (IMDSv2); run bin/transactor under systemd; tell Auto Scaling the instance is ready once the
# transactor listens (a launch lifecycle hook holds the instance in Pending:Wait until then); power
# off when the transactor exits. The launch template terminates on shutdown, so Auto Scaling starts
# a fresh instance: the transactor fails fast, as Datomic's own AMI did.
set -Eeuo pipefail
umask 077

# SHA-256 of the transactor configuration stored in SSM when this script was rendered. It is part
# of the launch template, so a configuration change makes a new launch template version.
readonly CONFIG_SHA256=@@CONFIG_SHA256
readonly SYSTEM=@@SYSTEM
readonly CONFIG_REGION=@@CONFIG_REGION
readonly SSM_PARAMETER=@@SSM_PARAMETER
readonly GROUP_NAME=@@GROUP_NAME
readonly HOOK_NAME=@@HOOK_NAME
readonly DATOMIC_VERSION=@@DATOMIC_VERSION
readonly DOWNLOAD_URL=@@DOWNLOAD_URL
readonly ZIP_SHA256=@@ZIP_SHA256
readonly XMX=@@XMX
readonly JAVA_OPTS=@@JAVA_OPTS
readonly LISTEN_TIMEOUT_SECONDS=@@LISTEN_TIMEOUT_SECONDS

readonly INSTALL_ROOT=/opt/datomic
readonly CONFIG_DIR=/etc/datomic
readonly CONFIG_FILE=/etc/datomic/transactor.properties
readonly JVM_ENV_FILE=/etc/datomic/jvm.env
readonly UNIT=datomic-transactor.service
readonly IMDS=http://169.254.169.254/latest

INSTANCE_ID=
INSTANCE_REGION=

log() {
  printf 'datomic-boot: %s\n' "$*"
}

# IMDSv2 only (the launch template requires tokens): a session token first, then the read.
imds() {
  local token
  token=$(curl -fsS --retry 5 --retry-connrefused -X PUT "$IMDS/api/token" \
    -H 'X-aws-ec2-metadata-token-ttl-seconds: 300')
  curl -fsS --retry 5 --retry-connrefused -H "X-aws-ec2-metadata-token: $token" \
    "$IMDS/meta-data/$1"
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

fail() {
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
log "system $SYSTEM, instance $INSTANCE_ID, Datomic Pro $DATOMIC_VERSION, configuration sha256 $CONFIG_SHA256"

# 1. A Java LTS that Datomic Pro supports, and the tools this script uses.
dnf install -y -q java-21-amazon-corretto-headless unzip awscli-2 iproute

# 2. Datomic Pro, the pinned release, verified when the operator gave its SHA-256.
url=$DOWNLOAD_URL
if [ -z "$url" ]; then
  url="https://datomic-pro-downloads.s3.amazonaws.com/$DATOMIC_VERSION/datomic-pro-$DATOMIC_VERSION.zip"
fi
zip=$(mktemp --suffix=.zip)
curl -fsSL --retry 5 --retry-connrefused -o "$zip" "$url"
if [ -n "$ZIP_SHA256" ]; then
  printf '%s  %s\n' "$ZIP_SHA256" "$zip" | sha256sum --check --strict --quiet - \
    || fail "the SHA-256 of $url is not datomic-zip-sha256"
  log "verified the SHA-256 of $url"
else
  log "downloaded $url (datomic-zip-sha256 is not set: not verified)"
fi
id -u datomic >/dev/null 2>&1 \
  || useradd --system --home-dir "$INSTALL_ROOT" --no-create-home --shell /sbin/nologin datomic
staging=$(mktemp -d)
unzip -q "$zip" -d "$staging"
rm -f "$zip"
transactor=$(find "$staging" -mindepth 3 -maxdepth 3 -path '*/bin/transactor' -type f | head -n 1)
[ -n "$transactor" ] || fail "no bin/transactor in $url"
release=$(dirname "$(dirname "$transactor")")
install -d -m 755 "$INSTALL_ROOT"
rm -rf "${INSTALL_ROOT:?}/release"
mv "$release" "$INSTALL_ROOT/release"
rm -rf "$staging"
chown -R datomic:datomic "$INSTALL_ROOT"

# 3. The configuration, from SSM, readable by the transactor only and never written to the log.
install -d -m 700 -o datomic -g datomic "$CONFIG_DIR"
config=$(mktemp "$CONFIG_DIR/.transactor.XXXXXX")
aws ssm get-parameter --region "$CONFIG_REGION" --name "$SSM_PARAMETER" --with-decryption \
  --query Parameter.Value --output text >"$config" \
  || fail "cannot read $SSM_PARAMETER in $CONFIG_REGION (run ensure-transactor)"
local_ip=$(imds local-ipv4)
public_ip=$(imds public-ipv4 2>/dev/null || true)
# Peers reach the active transactor at host, or at alt-host when host is not routable for them.
printf '\nhost=%s\nalt-host=%s\n' "$local_ip" "${public_ip:-$local_ip}" >>"$config"
chown datomic:datomic "$config"
chmod 600 "$config"
mv -f "$config" "$CONFIG_FILE"
port=$(sed -n 's/^[[:space:]]*port[[:space:]]*[=:][[:space:]]*\([0-9][0-9]*\).*$/\1/p' \
  "$CONFIG_FILE" | tail -n 1)
port=${port:-4334}

# 4. The transactor under systemd. The heap and JVM options arrive as an environment file so that
# systemd passes them as separate words; the transactor exiting for any reason powers off.
printf 'XMX=%s\nJAVA_OPTS=%s\n' "$XMX" "$JAVA_OPTS" >"$JVM_ENV_FILE"
chmod 644 "$JVM_ENV_FILE"
cat >"/etc/systemd/system/$UNIT" <<'UNIT'
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
ExecStart=/opt/datomic/release/bin/transactor -Xms${XMX} -Xmx${XMX} $JAVA_OPTS /etc/datomic/transactor.properties
ExecStopPost=+/usr/bin/systemctl --no-block poweroff
Restart=no
LimitNOFILE=65536

[Install]
WantedBy=multi-user.target
UNIT
systemctl daemon-reload
systemctl start "$UNIT"

# 5. Ready once the transactor accepts connections. An HA standby may not open its port until it
# takes over; it logs that it is standing by, which counts as ready too.
deadline=$((SECONDS + LISTEN_TIMEOUT_SECONDS))
# (No `grep -q` after a pipe: with pipefail, its early exit can fail the writer with SIGPIPE.)
until [ -n "$(ss -Hltn "sport = :$port")" ]; do
  systemctl is-active --quiet "$UNIT" || fail "the transactor exited before listening on $port"
  if journalctl -q -u "$UNIT" --no-pager | grep -iE 'standby|standing by' >/dev/null; then
    log "the transactor is a standby"
    break
  fi
  [ "$SECONDS" -lt "$deadline" ] || fail "the transactor did not listen on $port in time"
  sleep 5
done
trap - ERR
log "transactor ready (port $port)"
complete_launch CONTINUE

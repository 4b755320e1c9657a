# shellcheck shell=bash
# 3b. Logs to CloudWatch Logs (aws-log-group-retention-days): the Amazon CloudWatch agent, from the
# Amazon Linux 2023 repository, ships this boot's log (cloud-init's output, from its start) and
# the transactor's log folder (its log-dir, as step 5 resolves it) to the stack's log group, one
# stream each per instance. Inserted by datomic_aws/template_observe.py only when the key is set.
# Best effort: a transactor whose logs stay on the instance beats no transactor; the boot log says.
readonly LOG_GROUP=@@LOG_GROUP
readonly CW_AGENT_DIR=/opt/aws/amazon-cloudwatch-agent
readonly CW_AGENT_CONFIG=/opt/aws/amazon-cloudwatch-agent/etc/datomic-aws-logs.json
ship_logs() {
  local logs
  logs=$(property log-dir "$CONFIG_FILE") && logs=${logs:-log} || return 1
  [[ $logs = /* ]] || logs=$INSTALL_ROOT/release/$logs
  dnf install -y -q amazon-cloudwatch-agent || return 1
  install -d -m 755 "$CW_AGENT_DIR/etc" || return 1
  # Root reads both logs (cloud-init's is root's); `{instance_id}` is the agent's placeholder.
  cat >"$CW_AGENT_CONFIG" <<AGENT || return 1
{
  "agent": {"run_as_user": "root"},
  "logs": {
    "logs_collected": {
      "files": {
        "collect_list": [
          {"file_path": "/var/log/cloud-init-output.log", "log_group_name": "$LOG_GROUP",
           "log_stream_name": "{instance_id}/boot"},
          {"file_path": "$logs/*.log", "log_group_name": "$LOG_GROUP",
           "log_stream_name": "{instance_id}/transactor"}
        ]
      }
    }
  }
}
AGENT
  "$CW_AGENT_DIR/bin/amazon-cloudwatch-agent-ctl" -a fetch-config -m ec2 -s \
    -c "file:$CW_AGENT_CONFIG" >/dev/null || return 1
}
if ship_logs; then
  log "shipping the boot log and the transactor's logs to CloudWatch Logs group $LOG_GROUP"
else
  log "could not start the CloudWatch agent: the logs stay on the instance only"
fi
heartbeat

#!/bin/sh
# Creates synthner's per-service broker users from definitions.json (next to this script) and sets their passwords.
#
# Run where rabbitmqctl reaches the node: inside the broker's container (the dev overlay's postStart hook), or beside
# it with the node's Erlang cookie (compose's one-shot rabbitmq-users service; SYNTHNER_RABBITMQ_NODE names the node).
# Each user's password comes from PASSWORD_<USER>: PASSWORD_SYNTHNER_GENERATOR for synthner-generator, and so on. The
# definitions hold no password: a user whose variable is unset stops the script, so none is left without one.
# Running it again is harmless: the import re-applies the permissions, and every password is set again.
set -eu

here=$(dirname "$0")
definitions="$here/definitions.json"
node=${SYNTHNER_RABBITMQ_NODE:-}

ctl() {
    if [ -n "$node" ]; then
        rabbitmqctl -q -n "$node" "$@"
    else
        rabbitmqctl -q "$@"
    fi
}

ctl await_startup --timeout 300
ctl import_definitions "$definitions"
for user in $(sed -n 's/^ *"name": "\(synthner-[a-z0-9-]*\)".*/\1/p' "$definitions"); do
    variable="PASSWORD_$(echo "$user" | tr 'a-z-' 'A-Z_')"
    eval "password=\${$variable:-}"
    if [ -z "$password" ]; then
        echo "setup-users: $variable is not set (the password of broker user $user)" >&2
        exit 1
    fi
    ctl change_password "$user" "$password"
done
echo "setup-users: broker users ready"

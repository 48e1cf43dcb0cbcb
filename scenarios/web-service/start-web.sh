#!/bin/sh
# Serve folder $1 on port $2 with busybox httpd, in the background; wait until it listens.
set -e
httpd -p "$2" -h "$1"
for _ in $(seq 50); do
	netstat -ltn 2>/dev/null | grep -q ":$2 " && exit 0
	sleep 0.1
done
echo "httpd is not listening on port $2" >&2
exit 1

#!/bin/sh
# Write one reading every $INTERVAL seconds into /data:
#   /data/latest.json   the last reading (the dashboard shows it)
#   /data/readings.csv  every reading (kept across updates: it is a data dir)
set -eu
UNIT=degC BASE=20 SPREAD=2
[ -r /etc/sensor/sensor.conf ] && . /etc/sensor/sensor.conf
INTERVAL="${INTERVAL:-2}"
SENSOR_NAME="${SENSOR_NAME:-sensor}"
trap 'exit 0' TERM INT
mkdir -p /data
while :; do
  value=$(( BASE - SPREAD / 2 + RANDOM % (SPREAD + 1) ))
  now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  printf '%s,%s,%s\n' "$now" "$value" "$UNIT" >> /data/readings.csv
  printf '{"sensor":"%s","time":"%s","value":%s,"unit":"%s"}\n' \
    "$SENSOR_NAME" "$now" "$value" "$UNIT" > /data/latest.json.tmp
  mv /data/latest.json.tmp /data/latest.json
  sleep "$INTERVAL" & wait $!
done

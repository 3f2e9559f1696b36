#!/bin/sh
# Write one reading every $INTERVAL seconds into /data:
#   /data/latest.json   the last reading (the dashboard shows it)
#   /data/readings.csv  every reading (kept across updates: it is a data dir)
# A setting that is not a whole number (say BASE=21,5) stops the sensor with
# exit code 1 and one line on stderr: a bad release, as scripts/demo shows.
set -eu
UNIT=degC BASE=20 SPREAD=2
[ -r /etc/sensor/sensor.conf ] && . /etc/sensor/sensor.conf
INTERVAL="${INTERVAL:-2}"
SENSOR_NAME="${SENSOR_NAME:-sensor}"
SENSOR_VERSION="${SENSOR_VERSION:-1}"
for setting in "BASE=$BASE" "SPREAD=$SPREAD" "INTERVAL=$INTERVAL"; do
  case "${setting#*=}" in
    ''|-|*[!0-9-]*|?*-*)
      echo "sensor: $setting is not a whole number (check sensor.conf)" >&2
      exit 1 ;;
  esac
done
trap 'exit 0' TERM INT
mkdir -p /data
while :; do
  value=$(( BASE - SPREAD / 2 + RANDOM % (SPREAD + 1) ))
  now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  printf '%s,%s,%s\n' "$now" "$value" "$UNIT" >> /data/readings.csv
  printf '{"sensor":"%s","version":"%s","time":"%s","value":%s,"unit":"%s"}\n' \
    "$SENSOR_NAME" "$SENSOR_VERSION" "$now" "$value" "$UNIT" > /data/latest.json.tmp
  mv /data/latest.json.tmp /data/latest.json
  sleep "$INTERVAL" & wait $!
done

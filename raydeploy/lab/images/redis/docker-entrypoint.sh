#!/bin/sh
set -e
# Same contract as the upstream image: `docker run redis --requirepass X` runs redis-server.
case "$1" in
  -*) set -- redis-server "$@" ;;
esac
if [ "$1" = "redis-server" ]; then
  shift
  set -- redis-server --protected-mode no "$@"
  [ "$(id -u)" = "0" ] && exec setpriv --reuid=redis --regid=redis --init-groups "$@"
fi
exec "$@"

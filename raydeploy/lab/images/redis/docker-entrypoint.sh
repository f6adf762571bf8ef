#!/bin/sh
set -e
# Same contract as the upstream image: `docker run redis --requirepass X` runs redis-server, as the
# redis user, with protected mode off (the network decides who reaches it) unless asked otherwise.
case "$1" in
  -*) set -- redis-server "$@" ;;
esac
if [ "$1" = "redis-server" ]; then
  case " $* " in
    *" --protected-mode "*) ;;
    *) set -- "$@" --protected-mode no ;;
  esac
  [ "$(id -u)" = "0" ] && exec setpriv --reuid=redis --regid=redis --init-groups "$@"
fi
exec "$@"

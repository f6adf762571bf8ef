"""The local lab: real Debian hosts (systemd, sshd, their own Docker) in containers on this machine."""

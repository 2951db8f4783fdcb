#!/bin/sh
# MPICH hydra's "ssh": `mpiexec -launcher ssh -launcher-exec netns-launcher.sh` calls it as
# ssh would be called (options, then the host, then the command). The host is an emulated
# node's network namespace; the command runs there under that node's own hostname.
while [ $# -gt 0 ]; do
    case "$1" in
        -[bcDEeFIiJLlmOopQRSWw]) shift 2 ;;  # ssh options that take an argument
        -*) shift ;;
        *) break ;;
    esac
done
host=$1
shift
exec ip netns exec "$host" unshare --uts sh -c "hostname $host; $*"

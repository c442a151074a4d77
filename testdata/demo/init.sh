#!/bin/sh
# Runs from the context medium, as INIT_SCRIPTS names it.
echo "init.sh: hostname=$SET_HOSTNAME vmid=$VMID cwd=$PWD"

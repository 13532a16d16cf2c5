#!/bin/bash -eu
# projects/libbpf-sec-oracle/build.sh in google/oss-fuzz: the build is the
# project's own .clusterfuzzlite/build.sh (one definition for both engines).
exec "$SRC/libbpf-sec-oracle/.clusterfuzzlite/build.sh" "$@"

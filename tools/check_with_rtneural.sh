#!/bin/sh
# Checks AIDA-X / RTNeural JSON files with RTNeural itself (the AIDA-X plugin's engine):
# builds tools/rtneural_check/main.cpp against an RTNeural source tree and prints, for every
# file, the error of RTNeural's output on the file's own input_batch -> output_batch vectors.
# For a student written by dealias those vectors were recomputed by dealias, so a small
# error means that the plugin's engine loads the file and plays what dealias computed.
#
# usage: tools/check_with_rtneural.sh RTNEURAL_DIR MODEL.json...
#   RTNEURAL_DIR: a copy of https://github.com/jatinchowdhury18/RTNeural (its RTNeural/ and
#   modules/json/ folders are enough). Needs a C++17 compiler (g++).
set -eu
rt="$1"
shift
here="$(cd "$(dirname "$0")" && pwd)"
bin="$(mktemp -d)/rtneural_check"
g++ -O2 -std=c++17 -DRTNEURAL_DEFAULT_ALIGNMENT=16 -I"$rt" -o "$bin" "$here/rtneural_check/main.cpp"
for m in "$@"; do
    printf '%s: ' "$m"
    "$bin" "$m"
done

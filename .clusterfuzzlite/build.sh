#!/bin/bash -eu
# Build the fuzzers of libbpf-sec-oracle into $OUT: the one build script, for
# ClusterFuzzLite (.clusterfuzzlite/), OSS-Fuzz (packaging/oss-fuzz/build.sh
# runs this file) and a machine without Docker (fuzz/README.md, "Packaging").
#
# Rules:
# - Input is OSS-Fuzz's environment: $SRC, $OUT, $CC, $CFLAGS, $SANITIZER
#   ($CXX, $CXXFLAGS, $LIB_FUZZING_ENGINE are unused: nothing here is C++ and
#   atheris brings libFuzzer).  $WORK defaults to a temporary directory.
# - The project is $SEC_ORACLE_SRC (default $SRC/libbpf-sec-oracle), libbpf's
#   source tree $LIBBPF_SRC (default $SRC/libbpf); both are only read.
# - libbpf is built with $CC/$CFLAGS (in OSS-Fuzz: ASan + fuzzer-no-link) into
#   $OUT/libbpf.so.X.Y.Z (the release in its name picks the oracle's table),
#   with RUNPATH $ORIGIN and the libelf/libz it links copied beside it: the
#   runner images have no libelf.
# - Each fuzz/harness_<name>.py becomes $OUT/harness_<name> (wrapper) +
#   $OUT/harness_<name>.pkg (PyInstaller --onefile) through
#   compile_python_fuzzer, or .clusterfuzzlite/compile_python_fuzzer (same
#   interface) where the base image's is not on PATH; next to it go
#   harness_<name>_seed_corpus.zip (corpus/fuzz/<name>/) and
#   harness_<name>.dict (corpus/fuzz/<name>.dict).
# - The package carries the data the oracle reads at run time (--add-data,
#   same layout as the tree); the harness finds libbpf next to the package.
# - What OSS-Fuzz's `compile` puts in $OUT before this script (the sanitizer
#   runtime as sanitizer_with_fuzzer.so, llvm-symbolizer) is added when
#   missing, so the script also runs outside Docker.

REPO=${SEC_ORACLE_SRC:-$SRC/libbpf-sec-oracle}
LIBBPF_SRC=${LIBBPF_SRC:-$SRC/libbpf}
WORK=${WORK:-$(mktemp -d)}
PYTHON=${PYTHON:-python3}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
mkdir -p "$OUT" "$WORK"

# -- what OSS-Fuzz's `compile` provides ------------------------------------------
if [ ! -e "$OUT/sanitizer_with_fuzzer.so" ]; then
  atheris_dir=$("$PYTHON" -c 'import atheris; print(atheris.path())')
  case "$SANITIZER" in
    address) cp "$atheris_dir/asan_with_fuzzer.so" "$OUT/sanitizer_with_fuzzer.so" ;;
    undefined) cp "$atheris_dir/ubsan_with_fuzzer.so" "$OUT/sanitizer_with_fuzzer.so" ;;
  esac
fi
if [ ! -e "$OUT/llvm-symbolizer" ] && command -v llvm-symbolizer >/dev/null; then
  cp "$(command -v llvm-symbolizer)" "$OUT/"
fi
if ! command -v compile_python_fuzzer >/dev/null; then
  export PATH="$HERE:$PATH"   # the shim beside this script
fi

# -- libbpf, instrumented as $CFLAGS say ----------------------------------------
obj=$WORK/libbpf-obj
rm -rf "$obj"
# -Wall -std=gnu89 as libbpf's default CFLAGS, minus -Werror (a new compiler's
# new warning must not stop the build); LDFLAGS repeat $CFLAGS for the
# coverage build's profile runtime.
make -C "$LIBBPF_SRC/src" -j"$(nproc)" OBJDIR="$obj" CC="$CC" \
  CFLAGS="$CFLAGS -g -Wall -std=gnu89" \
  LDFLAGS="$CFLAGS -Wl,-rpath,'\$\$ORIGIN'" "$obj/libbpf.so"
so=$(find "$obj" -maxdepth 1 -type f -name 'libbpf.so.[0-9]*.[0-9]*.[0-9]*' | head -n 1)
rm -f "$OUT"/libbpf.so.*
cp "$so" "$OUT/"
for needed in libelf.so.1 libz.so.1; do
  path=$(ldd "$so" | awk -v lib="$needed" '$1 == lib { print $3 }')
  if [ -n "$path" ]; then cp -L "$path" "$OUT/$needed"; fi
done

# -- the harnesses ------------------------------------------------------------------
for harness in "$REPO"/fuzz/harness_*.py; do
  fuzzer=$(basename "$harness" .py)
  name=${fuzzer#harness_}
  compile_python_fuzzer "$harness" \
    --paths "$REPO" \
    --add-data "$REPO/oracle/tables/data:oracle/tables/data" \
    --add-data "$REPO/oracle/schemas:oracle/schemas" \
    --add-data "$REPO/corpus/known-findings.json:corpus"
  if [ -d "$REPO/corpus/fuzz/$name" ]; then
    rm -f "$OUT/${fuzzer}_seed_corpus.zip"
    (cd "$REPO/corpus/fuzz/$name" && zip -q -r "$OUT/${fuzzer}_seed_corpus.zip" .)
  fi
  if [ -f "$REPO/corpus/fuzz/$name.dict" ]; then
    cp "$REPO/corpus/fuzz/$name.dict" "$OUT/$fuzzer.dict"
  fi
done

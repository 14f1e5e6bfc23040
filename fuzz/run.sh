#!/usr/bin/env bash
# Builds the fuzz targets and runs each for a bounded time, starting from its seeds in
# seeds/<target>/ (README "Fuzzing"). Fails when any target finds a crash, a panic, a broken
# property or an input that takes over 10 s; the input is kept in artifacts/<target>/.
#
#   fuzz/run.sh                 every target, FUZZ_SECONDS (default 12) each
#   fuzz/run.sh route range     only those
#
# Builds on the nightly toolchain, as cargo-fuzz documents, when rustup has it, and says so
# and uses the default toolchain when not (no sanitizer is asked for, and nothing else cargo-fuzz
# passes needs nightly). Installs cargo-fuzz from crates.io when it is missing.
set -euo pipefail
cd "$(dirname "$0")"

seconds="${FUZZ_SECONDS:-12}"

if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  cargo=(cargo +nightly)
else
  echo "fuzz: the nightly Rust toolchain is NOT installed (rustup toolchain list); building on the" >&2
  echo "fuzz: default toolchain instead. For nightly: rustup toolchain install nightly --profile minimal" >&2
  cargo=(cargo)
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

# regmirror forbids unsafe code, so a sanitizer would only watch its dependencies; without one
# the build and every run are faster, and a panic or a failed assertion is a crash all the same.
echo "fuzz: building the targets"
"${cargo[@]}" fuzz build --sanitizer none

if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <("${cargo[@]}" fuzz list)
fi

passed=0
failed=()
for target in "${targets[@]}"; do
  echo "fuzz: $target for ${seconds}s"
  mkdir -p "corpus/$target" artifacts
  # The first directory is the working corpus (new inputs go there); the seeds are only read.
  if "${cargo[@]}" fuzz run --sanitizer none "$target" "corpus/$target" "seeds/$target" -- \
    -max_total_time="$seconds" -timeout=10 -print_final_stats=1 2>"artifacts/$target.log"; then
    grep -E '^stat::number_of_executed_units' "artifacts/$target.log" | sed "s/^/fuzz: $target /" || true
    passed=$((passed + 1))
  else
    tail -n 40 "artifacts/$target.log" >&2
    echo "fuzz: $target FAILED; reproduce with:" >&2
    echo "fuzz:   cd fuzz && ${cargo[*]} fuzz run --sanitizer none $target artifacts/$target/<file>" >&2
    failed+=("$target")
  fi
done

echo "fuzz: ${passed} passed, ${#failed[@]} failed"
if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzz: failing targets: ${failed[*]}" >&2
  exit 1
fi

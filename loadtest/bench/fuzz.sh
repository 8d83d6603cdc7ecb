#!/usr/bin/env bash
# Coverage-guided fuzzing of every parser that sees outside bytes: runs each
# cargo-fuzz target of tests/fuzz for a fixed time, one after the other, and
# prints executions and crashes per target (a Markdown table at the end, for
# README "Fuzzing"). Not part of CI: minutes of CPU per run.
#
# Targets (tests/fuzz/fuzz_targets/*.rs says what each one checks beyond "no
# panic"): request_head (prepare + HeadScan in pieces), response_head
# (upstream::head::parse + parse_response), chunked (ChunkedDecoder in
# pieces), ws_frames (frames, unmasking, close payloads, reassembly, route
# selection), json_path (JsonPath::parse + lookups, against serde_json),
# config_toml (Config::from_toml + the control plane's store round trip),
# admin_json (the configuration API's handler on submitted documents).
#
# Toolchain: cargo-fuzz (`cargo install cargo-fuzz --locked`) and a C++
# compiler (libfuzzer-sys builds libFuzzer). Stable Rust works with
# `--sanitizer none`: cargo-fuzz then passes only stable -C flags (sancov
# coverage, trace-compares, debug assertions); the address sanitizer needs
# `-Zsanitizer`, i.e. nightly (FUZZ_SANITIZER=address with a nightly
# toolchain, or RUSTC_BOOTSTRAP=1 on stable at your own risk). wasp has no
# unsafe code outside `sys`, so ASan adds little over Rust's own checks.
# Debug assertions (overflow checks included) are on (`-a`).
#
# Inputs that crash are written to tests/fuzz/artifacts/TARGET/; the corpus
# grows in tests/fuzz/corpus/TARGET/ (both ignored by git), seeded from
# tests/fuzz/seeds/TARGET/ (committed). After a crash the target is started
# again for the time left, so one run reports every crash it finds (up to
# MAX_CRASHES per target). Reproduce one with
#   cargo fuzz run --fuzz-dir tests/fuzz --sanitizer none -a TARGET ARTIFACT
# and turn it into a regression test (README "Fuzzing"). Exit status 1 when
# a target crashed or could not run.
#
# Usage: loadtest/bench/fuzz.sh [SECONDS_PER_TARGET=60]
#   env: FUZZ_TARGETS="chunked ws_frames" (a subset), FUZZ_SANITIZER=none,
#        MAX_CRASHES=5, NICE=19 (the box is shared: builds and runs are niced)
set -euo pipefail

SECS=${1:-60}
cd "$(dirname "$0")/../.."
FUZZ_DIR=tests/fuzz
SANITIZER=${FUZZ_SANITIZER:-none}
MAX_CRASHES=${MAX_CRASHES:-5}
NICE=${NICE:-19}
read -ra TARGETS <<<"${FUZZ_TARGETS:-request_head response_head chunked ws_frames json_path config_toml admin_json}"

command -v cargo-fuzz >/dev/null || { echo "cargo-fuzz missing: cargo install cargo-fuzz --locked" >&2; exit 1; }
command -v c++ >/dev/null || { echo "a C++ compiler is missing (libfuzzer-sys): apt-get install -y g++" >&2; exit 1; }

# Per-target libFuzzer options: input size bounds (a head may reach the
# default 16 KiB limit; a chunk-size line may pass the 4 KiB line limit) and
# the HTTP token dictionary for the head parsers.
opts() {
    case $1 in
        request_head | response_head) echo "-max_len=20000 -dict=$FUZZ_DIR/http.dict" ;;
        chunked) echo "-max_len=12000 -len_control=0" ;;
        *) echo "-max_len=8192" ;;
    esac
}

# Built once; the binaries then run directly, so the time given is fuzzing
# time, and an edit to the sources meanwhile does not start a rebuild.
echo "building ${#TARGETS[@]} targets (sanitizer: $SANITIZER)..." >&2
nice -n "$NICE" cargo fuzz build --fuzz-dir "$FUZZ_DIR" --sanitizer "$SANITIZER" -a >&2
BIN=$FUZZ_DIR/target/$(rustc -vV | sed -n 's/^host: //p')/release

LOGS=$FUZZ_DIR/artifacts/logs
mkdir -p "$LOGS"
rows=()
total_crashes=0
total_failed=0
for t in "${TARGETS[@]}"; do
    corpus=$FUZZ_DIR/corpus/$t
    artifacts=$FUZZ_DIR/artifacts/$t
    mkdir -p "$corpus" "$artifacts"
    before=$(find "$artifacts" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'oom-*' -o -name 'timeout-*' -o -name 'leak-*' \) | wc -l)
    execs=0
    runs=0
    failed=0
    start=$(date +%s)
    left=$SECS
    : >"$LOGS/$t.log"
    while ((left > 0)); do
        runs=$((runs + 1))
        set +e
        # shellcheck disable=SC2046 # opts are words
        nice -n "$NICE" "$BIN/$t" -artifact_prefix="$artifacts/" \
            -max_total_time="$left" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 $(opts "$t") \
            "$corpus" "$FUZZ_DIR/seeds/$t" >"$LOGS/$t.run" 2>&1
        rc=$?
        set -e
        cat "$LOGS/$t.run" >>"$LOGS/$t.log"
        # libFuzzer's final stats (printed on a crash too).
        n=$(awk '/stat::number_of_executed_units/ {v=$2} END {print v+0}' "$LOGS/$t.run")
        execs=$((execs + n))
        now=$(date +%s)
        left=$((SECS - (now - start)))
        crashes=$(($(find "$artifacts" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'oom-*' -o -name 'timeout-*' -o -name 'leak-*' \) | wc -l) - before))
        if ((rc == 0)); then
            break
        fi
        if ! grep -aq 'Test unit written to' "$LOGS/$t.run"; then
            # It stopped without a crash input: a setup error (see the log).
            failed=1
            break
        fi
        if ((crashes >= MAX_CRASHES)); then
            break
        fi
    done
    crashes=$(($(find "$artifacts" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'oom-*' -o -name 'timeout-*' -o -name 'leak-*' \) | wc -l) - before))
    total_crashes=$((total_crashes + crashes))
    cov=$(grep -aE '^#[0-9]+' "$LOGS/$t.log" | tail -1 | grep -oE 'cov: [0-9]+' | awk '{print $2}' || true)
    rm -f "$LOGS/$t.run"
    corpus_n=$(find "$corpus" -type f | wc -l)
    printf '%-14s %12s executions  %3s crashes  cov %6s  corpus %5s  (%s run(s), log %s)\n' \
        "$t" "$execs" "$crashes" "${cov:-?}" "$corpus_n" "$runs" "$LOGS/$t.log" >&2
    if ((failed)); then
        crashes="$crashes (the run failed: $LOGS/$t.log)"
        total_failed=$((total_failed + 1))
    fi
    rows+=("| \`$t\` | ${SECS} s | $execs | $((execs / (SECS > 0 ? SECS : 1)))/s | ${cov:-?} | $crashes |")
done

echo
echo "$(date -u +%Y-%m-%d), \`loadtest/bench/fuzz.sh $SECS\` (sanitizer $SANITIZER, debug assertions), $(rustc --version | cut -d' ' -f1-2), $(nproc) cores shared:"
echo
echo "| target | time | executions | per second | coverage (edges) | crashes |"
echo "|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
if ((total_crashes > 0)); then
    echo
    echo "crash inputs: $FUZZ_DIR/artifacts/<target>/ (reproduce: cargo fuzz run --fuzz-dir $FUZZ_DIR --sanitizer $SANITIZER -a <target> <file>)"
fi
# Exit 1 when anything crashed or a run failed.
((total_crashes == 0 && total_failed == 0))

#!/usr/bin/env bash
# Hardware-counter profile of one kernel launch of a sageattn call, the attention kernel unless PROFILED
# names another (development tool, GPU machine only):
# warp-state sampling per SASS instruction (where the warps wait), pipe utilization and issue
# statistics. Writes three files to $OUT (the device tool returns at most 8): NAME.details.txt
# (ncu's sections), NAME.sass.csv (every instruction with its stall samples) and NAME.summary.txt
# (samples by opcode and the hottest instructions), which it also prints.
#   KERNEL=sm90_wgmma SEQLEN=8192 scripts/ncu_attention.sh
#   PROFILED=quantize_kernel BATCH=4 SEQLEN=16384 scripts/ncu_attention.sh  # a pre-pass grid instead
#     (under ncu the grids run one after the other: no programmatic overlap in its duration)
#   VARLEN_SEED=2 PROFILED=quantize_kernel scripts/ncu_attention.sh  # scripts/bench_varlen.py's packed
#     call of that seed (8 random lengths in [1, 8K], HEADS heads) instead of a dense one
#   KEEP_REPORT=1 ...   # also keep NAME.ncu-rep (ncu -i NAME.ncu-rep --page source ... re-reads it)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu_out}
mkdir -p "$OUT"
KERNEL=${KERNEL:-sm90_wgmma}
SEQLEN=${SEQLEN:-8192}
HEADS=${HEADS:-32}
BATCH=${BATCH:-1}
PROFILED=${PROFILED:-attention_sm}  # regex of the kernel name to profile
HEAD_DIM=${HEAD_DIM:-128}
CAUSAL=${CAUSAL:-0}
VARLEN_SEED=${VARLEN_SEED:-}
SHAPE=b${BATCH}_h${HEADS}_n${SEQLEN}
[ -n "$VARLEN_SEED" ] && SHAPE=varlen${VARLEN_SEED}_h${HEADS}
NAME=${NAME:-${PROFILED//[^A-Za-z0-9]/_}_${KERNEL}_${SHAPE}_c${CAUSAL}}
REPORT=/tmp/$NAME
if [ -n "$VARLEN_SEED" ]; then
  # The lengths and tensors of scripts/bench_varlen.py --seed VARLEN_SEED.
  cat > /tmp/ncu_one_call.py <<PY
import torch, sageattention
lengths = torch.randint(1, 8193, (8,), generator=torch.Generator().manual_seed($VARLEN_SEED)).tolist()
cu = torch.tensor([0] + torch.tensor(lengths).cumsum(0).tolist(), dtype=torch.int32, device="cuda")
gen = torch.Generator(device="cuda").manual_seed($VARLEN_SEED)
q, k, v = (torch.randn(sum(lengths), $HEADS, $HEAD_DIM, device="cuda", dtype=torch.float16, generator=gen) for _ in range(3))
for _ in range(2):
    sageattention.sageattn_varlen(q, k, v, cu, cu, max(lengths), max(lengths), is_causal=bool($CAUSAL), kernel="$KERNEL")
torch.cuda.synchronize()
PY
else
  cat > /tmp/ncu_one_call.py <<PY
import torch, sageattention
torch.manual_seed(0)
q, k, v = (torch.randn($BATCH, $HEADS, $SEQLEN, $HEAD_DIM, device="cuda", dtype=torch.float16) for _ in range(3))
for _ in range(2):
    sageattention.sageattn(q, k, v, is_causal=bool($CAUSAL), kernel="$KERNEL")
torch.cuda.synchronize()
PY
fi
# --clock-control none: leave the clocks as the benchmarks see them (device METHOD.md).
ncu --clock-control none --kernel-name "regex:$PROFILED" --launch-skip 1 --launch-count 1 \
    --section SpeedOfLight --section ComputeWorkloadAnalysis --section InstructionStats \
    --section WarpStateStats --section SourceCounters --section Occupancy --section LaunchStats \
    -f -o "$REPORT" python3 /tmp/ncu_one_call.py > "$REPORT.log" 2>&1 || { tail -20 "$REPORT.log"; exit 1; }
ncu -i "$REPORT.ncu-rep" --page details > "$OUT/$NAME.details.txt" 2>&1
ncu -i "$REPORT.ncu-rep" --page source --csv --print-source sass > "$OUT/$NAME.sass.csv" 2>&1
[ "${KEEP_REPORT:-0}" = 1 ] && cp "$REPORT.ncu-rep" "$OUT/"
python3 - "$OUT/$NAME.sass.csv" > "$OUT/$NAME.summary.txt" <<'PY'
import csv, sys
rows = list(csv.reader(open(sys.argv[1])))
header = next(i for i, r in enumerate(rows) if "Address" in r)
cols, data = rows[header], rows[header + 1:]
src, allc, stall = cols.index("Source"), cols.index("Warp Stall Sampling (All Samples)"), \
    cols.index("Warp Stall Sampling (Not-issued Samples)")
execs = cols.index("Instructions Executed")
num = lambda v: int(float(v.replace(",", "") or 0))
total = sum(num(r[allc]) for r in data) or 1
by_op = {}
for r in data:
    words = r[src].split()
    op = (words[1] if words and words[0].startswith("@") else (words[0] if words else "?")).split(".")[0]
    s = by_op.setdefault(op, [0, 0, 0])
    s[0] += num(r[allc]); s[1] += num(r[stall]); s[2] += 1
print(f"{total} samples; by opcode (samples, not-issued, static count):")
for op, (a, n, c) in sorted(by_op.items(), key=lambda kv: -kv[1][0])[:20]:
    print(f"  {op:10s} {a:8d} {100 * a / total:5.1f}%  not issued {n:8d}  x{c}")
print("hottest instructions (samples, not-issued, executions):")
for r in sorted(data, key=lambda r: -num(r[allc]))[:25]:
    print(f"  {num(r[allc]):7d} {num(r[stall]):7d} {num(r[execs]):10d}  {r[src][:80]}")
PY
grep -E "Duration|DRAM Throughput|Waves Per SM|SM Frequency|Issue Slots Busy|Executed Ipc A|Warp Cycles Per Issued|Registers Per|Achieved Active Warps|highest-utilized" \
    "$OUT/$NAME.details.txt"
cat "$OUT/$NAME.summary.txt"

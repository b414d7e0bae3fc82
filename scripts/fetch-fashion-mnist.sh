#!/usr/bin/env bash
# Fetch Fashion-MNIST (MIT, (c) 2017 Zalando SE) from Debian's `dataset-fashion-mnist`
# package and write either the full data set or the small subset the repository ships.
#
#   scripts/fetch-fashion-mnist.sh --subset host/data/fashion-mnist
#   scripts/fetch-fashion-mnist.sh --full /some/dir
#
# The package is fetched with `apt-get download` into a temporary folder (nothing is
# installed), its sha256 is checked against the pinned value below, and it is unpacked
# with `dpkg-deb -x`. Set FASHION_MNIST_DEB=/path/to/the.deb to use a copy already on
# disk instead (it is checked against the same sha256).
#
# --full DIR    the four original IDX files as shipped (gzipped), LICENSE, SHA256SUMS
# --subset DIR  first 10,000 train and first 2,000 t10k images/labels as valid IDX files,
#               gzipped with `gzip -n -9` (byte-for-byte reproducible), LICENSE,
#               SHA256SUMS and README.md
set -euo pipefail

PKG=dataset-fashion-mnist
PKG_VERSION='0.0~git20200523.55506a9-1'
PKG_SHA256=39e172fe32dd318ebb3e512220c3beea2fa47d7e20bab348fb4e0922d6beefc0
UPSTREAM=https://github.com/zalandoresearch/fashion-mnist
UPSTREAM_COMMIT=55506a9
TRAIN_SUBSET=10000
TEST_SUBSET=2000

usage() {
    cat <<EOF
usage: $0 [--subset OUT_DIR] [--full OUT_DIR]

  --subset OUT_DIR  write the first $TRAIN_SUBSET training and first $TEST_SUBSET test
                    images/labels (gzipped IDX), LICENSE, SHA256SUMS and README.md
  --full OUT_DIR    write the four full IDX files (gzipped), LICENSE and SHA256SUMS

Data come from Debian's $PKG $PKG_VERSION (sha256 $PKG_SHA256),
fetched with 'apt-get download' (no installation). FASHION_MNIST_DEB=FILE uses a
local copy of that .deb instead.
EOF
}

subset_dir=
full_dir=
if [ $# -eq 0 ]; then
    usage >&2
    exit 2
fi
while [ $# -gt 0 ]; do
    case "$1" in
        --subset)
            [ $# -ge 2 ] || { echo "error: --subset needs OUT_DIR" >&2; usage >&2; exit 2; }
            subset_dir=$2; shift 2 ;;
        --full)
            [ $# -ge 2 ] || { echo "error: --full needs OUT_DIR" >&2; usage >&2; exit 2; }
            full_dir=$2; shift 2 ;;
        -h|--help)
            usage; exit 0 ;;
        *)
            echo "error: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done

for tool in apt-get dpkg-deb python3 gzip sha256sum; do
    command -v "$tool" >/dev/null || { echo "error: '$tool' not found in PATH" >&2; exit 1; }
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/fashion-mnist.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# --- fetch and verify the package --------------------------------------------------------
if [ -n "${FASHION_MNIST_DEB:-}" ]; then
    deb=$FASHION_MNIST_DEB
    [ -f "$deb" ] || { echo "error: FASHION_MNIST_DEB=$deb: no such file" >&2; exit 1; }
else
    mkdir "$tmp/deb"
    # apt-get download writes into the current directory. As root it prints a harmless
    # 'Download is performed unsandboxed as root' warning (the private temp dir is not
    # writable by the _apt user).
    if ! (cd "$tmp/deb" && apt-get download "$PKG=$PKG_VERSION"); then
        echo "error: 'apt-get download $PKG=$PKG_VERSION' failed" >&2
        echo "       (run 'apt-get update' first if the package lists are missing or stale)" >&2
        exit 1
    fi
    deb=$(find "$tmp/deb" -maxdepth 1 -name "${PKG}_*.deb" -print -quit)
    [ -n "$deb" ] || { echo "error: apt-get download left no ${PKG}_*.deb" >&2; exit 1; }
fi
actual=$(sha256sum "$deb" | cut -d' ' -f1)
if [ "$actual" != "$PKG_SHA256" ]; then
    echo "error: sha256 mismatch for $deb" >&2
    echo "       expected $PKG_SHA256" >&2
    echo "       actual   $actual" >&2
    exit 1
fi
echo "verified $(basename "$deb") (sha256 $actual)" >&2

dpkg-deb -x "$deb" "$tmp/root"

# --- locate the IDX files and the licence ------------------------------------------------
# Debian ships them gzipped in /usr/share/datasets/fashion-mnist/; accept plain files too.
names=(train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte)
declare -A src
for name in "${names[@]}"; do
    f=$(find "$tmp/root" -type f \( -name "$name.gz" -o -name "$name" \) -print -quit)
    [ -n "$f" ] || { echo "error: $name(.gz) not found in $(basename "$deb")" >&2; exit 1; }
    src[$name]=$f
done
copyright="$tmp/root/usr/share/doc/$PKG/copyright"
[ -f "$copyright" ] || { echo "error: $PKG's copyright file not found in the package" >&2; exit 1; }
readme_gz="$tmp/root/usr/share/doc/$PKG/README.md.gz"   # upstream README; holds the MIT text

# --- verify, subset and write LICENSE (python3, standard library only) ------------------
mkdir "$tmp/work"
python3 - "$tmp/work" "$copyright" "$readme_gz" "$TRAIN_SUBSET" "$TEST_SUBSET" \
    "${src[train-images-idx3-ubyte]}" "${src[train-labels-idx1-ubyte]}" \
    "${src[t10k-images-idx3-ubyte]}" "${src[t10k-labels-idx1-ubyte]}" <<'PY'
import gzip, hashlib, os, struct, sys

work, copyright_path, readme_gz = sys.argv[1:4]
n_train, n_test = int(sys.argv[4]), int(sys.argv[5])
paths = dict(zip(["train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                  "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"], sys.argv[6:10]))
# md5 of the uncompressed upstream files (as published for Fashion-MNIST, e.g. by torchvision)
MD5 = {
    "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
    "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
    "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
    "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
}
COUNT = {"train": 60000, "t10k": 10000}
CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
           "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]

def die(msg):
    sys.exit("error: " + msg)

def load(name):
    path = paths[name]
    with open(path, "rb") as f:
        raw = f.read()
    data = gzip.decompress(raw) if path.endswith(".gz") else raw
    split, kind = name.split("-")[0], name.split("-")[1]
    n = COUNT[split]
    if kind == "images":
        if len(data) < 16:
            die(f"{name}: too short for an IDX header ({len(data)} bytes)")
        magic, count, rows, cols = struct.unpack(">IIII", data[:16])
        if magic != 0x00000803:
            die(f"{name}: magic 0x{magic:08x}, expected 0x00000803")
        if (count, rows, cols) != (n, 28, 28):
            die(f"{name}: dims {count}x{rows}x{cols}, expected {n}x28x28")
        want = 16 + n * 28 * 28
    else:
        if len(data) < 8:
            die(f"{name}: too short for an IDX header ({len(data)} bytes)")
        magic, count = struct.unpack(">II", data[:8])
        if magic != 0x00000801:
            die(f"{name}: magic 0x{magic:08x}, expected 0x00000801")
        if count != n:
            die(f"{name}: count {count}, expected {n}")
        want = 8 + n
    if len(data) != want:
        die(f"{name}: {len(data)} bytes, expected {want}")
    md5 = hashlib.md5(data).hexdigest()
    if md5 != MD5[name]:
        die(f"{name}: md5 {md5} of the uncompressed file, expected {MD5[name]}")
    return data

data = {name: load(name) for name in paths}
for split in ("train", "t10k"):
    labels = data[f"{split}-labels-idx1-ubyte"][8:]
    if max(labels) > 9:
        die(f"{split}-labels-idx1-ubyte: label {max(labels)} out of range 0..9")

os.makedirs(os.path.join(work, "subset"))
counts = {}
for split, n in (("train", n_train), ("t10k", n_test)):
    img = data[f"{split}-images-idx3-ubyte"]
    lab = data[f"{split}-labels-idx1-ubyte"]
    with open(os.path.join(work, "subset", f"{split}-images-idx3-ubyte"), "wb") as f:
        f.write(struct.pack(">IIII", 0x00000803, n, 28, 28) + img[16:16 + n * 784])
    with open(os.path.join(work, "subset", f"{split}-labels-idx1-ubyte"), "wb") as f:
        f.write(struct.pack(">II", 0x00000801, n) + lab[8:8 + n])
    counts[split] = [lab[8:8 + n].count(c) for c in range(10)]

with open(os.path.join(work, "class-counts.md"), "w") as f:
    f.write("| label | class | train (first %d) | t10k (first %d) |\n" % (n_train, n_test))
    f.write("| ---: | --- | ---: | ---: |\n")
    for c in range(10):
        f.write(f"| {c} | {CLASSES[c]} | {counts['train'][c]} | {counts['t10k'][c]} |\n")

# LICENSE: upstream's licence section (from its README, as shipped by Debian), then the
# Debian copyright file verbatim.
parts = []
if os.path.exists(readme_gz):
    text = gzip.decompress(open(readme_gz, "rb").read()).decode("utf-8")
    i = text.find("## License")
    if i >= 0:
        body = text[i + len("## License"):].strip()
        parts.append("Fashion-MNIST licence, as stated in the upstream README\n"
                     "(https://github.com/zalandoresearch/fashion-mnist):\n\n" + body + "\n")
with open(copyright_path, encoding="utf-8") as f:
    parts.append("Debian package dataset-fashion-mnist, "
                 "/usr/share/doc/dataset-fashion-mnist/copyright:\n\n" + f.read())
lic = "\n" + "-" * 72 + "\n\n"
with open(os.path.join(work, "LICENSE"), "w", encoding="utf-8") as f:
    f.write(lic.join(parts))
PY

thousands() { # 10000 -> 10,000 (independent of the locale)
    echo "$1" | sed -e ':a' -e 's/\([0-9]\)\([0-9]\{3\}\)\($\|,\)/\1,\2\3/' -e 'ta'
}

write_sums() { # DIR: SHA256SUMS of the four .gz files in DIR
    (cd "$1" && sha256sum "${names[@]/%/.gz}" > SHA256SUMS)
}

# --- --full ------------------------------------------------------------------------------
if [ -n "$full_dir" ]; then
    mkdir -p "$full_dir"
    for name in "${names[@]}"; do
        case "${src[$name]}" in
            *.gz) cp "${src[$name]}" "$full_dir/$name.gz" ;;
            *) gzip -n -9 -c "${src[$name]}" > "$full_dir/$name.gz" ;;
        esac
    done
    cp "$tmp/work/LICENSE" "$full_dir/LICENSE"
    write_sums "$full_dir"
    echo "wrote the full data set to $full_dir" >&2
fi

# --- --subset ----------------------------------------------------------------------------
if [ -n "$subset_dir" ]; then
    mkdir -p "$subset_dir"
    for name in "${names[@]}"; do
        gzip -n -9 -c "$tmp/work/subset/$name" > "$subset_dir/$name.gz"
    done
    cp "$tmp/work/LICENSE" "$subset_dir/LICENSE"
    write_sums "$subset_dir"
    cat > "$subset_dir/README.md" <<EOF
# Fashion-MNIST subset

A small subset of [Fashion-MNIST]($UPSTREAM) (Xiao, Rasul & Vollgraf, 2017): 28×28 grey-scale
images of clothing in 10 classes, in the original IDX format, gzipped.

| file | content |
| --- | --- |
| \`train-images-idx3-ubyte.gz\` | first $(thousands "$TRAIN_SUBSET") images of the training set (IDX magic 0x00000803, dims $TRAIN_SUBSET×28×28) |
| \`train-labels-idx1-ubyte.gz\` | their labels (IDX magic 0x00000801, count $TRAIN_SUBSET) |
| \`t10k-images-idx3-ubyte.gz\` | first $(thousands "$TEST_SUBSET") images of the test (t10k) set (dims $TEST_SUBSET×28×28) |
| \`t10k-labels-idx1-ubyte.gz\` | their labels (count $TEST_SUBSET) |
| \`SHA256SUMS\` | sha256 of the four \`.gz\` files |
| \`LICENSE\` | MIT, © 2017 Zalando SE (upstream text and Debian's copyright file) |

Subset rule: the first $(thousands "$TRAIN_SUBSET") records of \`train-*\` and the first
$(thousands "$TEST_SUBSET") records of \`t10k-*\`, in file order, nothing else changed
(pixels and labels are byte-for-byte the upstream ones; only the header counts differ).

Source: Debian package \`$PKG\` version \`$PKG_VERSION\` (.deb sha256
\`$PKG_SHA256\`), which packages upstream
$UPSTREAM at commit \`$UPSTREAM_COMMIT\`. The uncompressed upstream files are checked against
their published md5 sums before subsetting.

Labels: 0 T-shirt/top, 1 Trouser, 2 Pullover, 3 Dress, 4 Coat, 5 Sandal, 6 Shirt,
7 Sneaker, 8 Bag, 9 Ankle boot. Class counts in this subset:

$(cat "$tmp/work/class-counts.md")

Regenerate (byte-identical; needs apt-get, dpkg-deb, python3, gzip) from the repository root:

    bash scripts/fetch-fashion-mnist.sh --subset $subset_dir
EOF
    echo "wrote the subset to $subset_dir" >&2
fi

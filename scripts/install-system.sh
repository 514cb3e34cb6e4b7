#!/bin/sh
# Install the Debian packages maskgen uses where we can (apt-get, as root or through
# password-less sudo): dataset-fashion-mnist (the Fashion-MNIST IDX files every recipe in
# configs/ trains on, /usr/share/datasets/fashion-mnist) and chromium + chromium-driver (the
# app's browser test, tests/test_app.py). Never fails: without them the tests that need them
# are skipped with a one-line reason, every other test still runs, and the recipes ask for
# fashion-mnist:DIR.
need=""
[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || [ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte ] || need="dataset-fashion-mnist"
if ! command -v chromedriver >/dev/null 2>&1 || ! { command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; }; then
    need="$need chromium chromium-driver"
fi
[ -z "$need" ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-system: no apt-get here; not installed:$need (tests needing them are skipped)" >&2
    exit 0
fi
if [ "$(id -u)" = 0 ]; then
    as_root=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    as_root="sudo -n"
else
    echo "install-system: not root and no password-less sudo; not installed:$need (tests needing them are skipped)" >&2
    exit 0
fi
$as_root apt-get update -qq >/dev/null 2>&1
for pkg in $need; do
    $as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >/dev/null 2>&1 \
        || echo "install-system: apt-get could not install $pkg (tests needing it are skipped)" >&2
done
exit 0

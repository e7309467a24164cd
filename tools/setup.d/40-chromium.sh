# Debian's Chromium, driven by Playwright (its own browser download is never used): the browser
# tests (tests/e2e_local/test_control_browser.py) open hostile pages against kaip up's control port.
component chromium "Debian's chromium and chromium-driver for the headless-browser tests"
chromium_ready() { test -x /usr/bin/chromium; }
chromium_install() { apt_install chromium chromium-driver; }

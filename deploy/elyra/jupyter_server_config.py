# kfbridge as the backend of Elyra's JupyterLab frontend (see docs/elyra-api.md).
#
# Put this file (or its body) in a jupyter_server_config.py that Jupyter reads (`jupyter --paths`,
# "config" section). It needs jupyter-server-proxy and the elyra package (for its frontend), and
# kfbridge on PATH (or KFBRIDGE_BIN).
#
# What it does:
#   1. Turns off Elyra's Python server extension, so its handlers no longer answer <base_url>elyra/….
#      Elyra's JupyterLab (frontend) extension stays on.
#   2. Registers kfbridge with jupyter-server-proxy as the named server "elyra": every request the
#      frontend sends to <base_url>elyra/… reaches kfbridge with that prefix stripped
#      (absolute_url False), which is where kfbridge serves Elyra's routes.
#   3. kfbridge listens on 127.0.0.1 only and trusts Jupyter's authentication (--trust-proxy-auth):
#      Jupyter checks the user's login before it proxies; kfbridge checks Jupyter's XSRF header
#      (X-XSRFToken against the _xsrf cookie) on every state change, because jupyter-server-proxy
#      leaves that check to the proxied application.
# Use it instead of deploy/jupyter-server-proxy's "kfbridge" entry, not beside it (both would run a
# kfbridge on the same data directory); kfbridge's own UI is served at <base_url>elyra/ as well.
import os
import secrets
import shutil

c = get_config()  # noqa: F821 (provided by Jupyter when it loads this file)

# 1. Elyra's server extension off (same as `jupyter server extension disable elyra`).
c.ServerApp.jpserver_extensions.update({"elyra": False})

_kfbridge = os.environ.get("KFBRIDGE_BIN") or shutil.which("kfbridge") or "kfbridge"
# kfbridge's own API token, for scripts and notebook cells that call it directly (127.0.0.1);
# the browser does not need it behind the proxy.
_token = os.environ.get("KFBRIDGE_TOKEN") or secrets.token_hex(24)
os.environ["KFBRIDGE_TOKEN"] = _token

# 2 + 3. kfbridge as jupyter-server-proxy's named server "elyra". {port} is chosen by the proxy.
c.ServerProxy.servers.update({
    "elyra": {
        "command": [
            _kfbridge, "serve",
            "--addr", "127.0.0.1:{port}",
            # Must be Jupyter's root directory: Elyra sends paths relative to it.
            "--workspace", os.environ.get("KFBRIDGE_WORKSPACE") or os.getcwd(),
            "--trust-proxy-auth",
        ],
        "environment": {"KFBRIDGE_TOKEN": _token},
        # The proxy strips <base_url>elyra; kfbridge reads the prefix from X-Forwarded-Prefix /
        # X-Forwarded-Context to build Location headers and links.
        "absolute_url": False,
        "timeout": 30,
        # Elyra's frontend reaches it; no launcher tile of its own. kfbridge's UI (runs, live
        # logs) is also served here, at <base_url>elyra/.
        "launcher_entry": {"enabled": False},
        "new_browser_tab": False,
    },
})

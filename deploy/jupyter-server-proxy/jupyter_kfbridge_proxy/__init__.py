"""jupyter-server-proxy entry for kfbridge.

Installing this package (``pip install ./deploy/jupyter-server-proxy``) adds a "Kubeflow runs"
tile to the JupyterLab launcher. jupyter-server-proxy starts ``kfbridge serve`` on a local port the
first time the tile (or any URL under ``<base_url>kfbridge/``) is opened, and proxies to it with the
prefix stripped (``absolute_url: False``): kfbridge's UI uses only relative URLs, so it works under
``/user/<name>/kfbridge/`` without knowing that prefix.

Authentication: one random token per Jupyter server process. kfbridge gets it in its environment; the
launcher tile opens ``kfbridge/?token=…`` once, which kfbridge turns into its own HttpOnly,
SameSite=Strict session cookie (scoped to the prefix) before redirecting to the page without the
token. The token is not injected as a proxy header on purpose: jupyter-server-proxy does not apply
Jupyter's XSRF check to proxied requests, so a header added to every request would let any page that
can make the browser send Jupyter's cookie act on kfbridge; kfbridge's own cookie + CSRF header
keeps that protection. Kernels started by this Jupyter server inherit KFBRIDGE_URL and
KFBRIDGE_TOKEN, so notebook cells can call the REST API (see docs/jupyterlab.md).
"""

import os
import secrets
import shutil
import socket

__all__ = ["setup_kfbridge"]

_HERE = os.path.dirname(os.path.abspath(__file__))


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def setup_kfbridge():
    """Return the jupyter-server-proxy server-process configuration for kfbridge."""
    executable = os.environ.get("KFBRIDGE_BIN") or shutil.which("kfbridge") or "kfbridge"
    token = os.environ.get("KFBRIDGE_TOKEN") or secrets.token_hex(24)
    # A fixed port chosen now (instead of jupyter-server-proxy's "{port}") so kernels can be told
    # where the API is before kfbridge has started.
    port = int(os.environ.get("KFBRIDGE_PORT") or _free_port())
    workspace = os.environ.get("KFBRIDGE_WORKSPACE") or os.getcwd()
    # Kernels inherit the Jupyter server's environment: notebook cells find the API here.
    os.environ["KFBRIDGE_URL"] = "http://127.0.0.1:%d" % port
    os.environ["KFBRIDGE_TOKEN"] = token
    return {
        "command": [executable, "serve", "--addr", "127.0.0.1:%d" % port, "--workspace", workspace],
        "port": port,
        "environment": {"KFBRIDGE_TOKEN": token},
        # kfbridge serves at "/" and uses relative URLs: let the proxy strip the prefix.
        "absolute_url": False,
        "timeout": 30,
        "new_browser_tab": False,
        "launcher_entry": {
            "enabled": True,
            "title": "Kubeflow runs",
            "icon_path": os.path.join(_HERE, "icons", "kfbridge.svg"),
            "category": "Other",
            # Opened once from the launcher: logs the browser in, then kfbridge drops the token
            # from the address with a redirect.
            "path_info": "kfbridge/?token=" + token,
        },
    }

# Alternative to installing the package: put this in a jupyter_server_config.py found by
# `jupyter --paths` (config section). It registers the same server process under /kfbridge/.
import sys, os

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__))))
from jupyter_kfbridge_proxy import setup_kfbridge  # noqa: E402

c = get_config()  # noqa: F821 (provided by Jupyter when it loads this file)
c.ServerProxy.servers = {"kfbridge": setup_kfbridge()}

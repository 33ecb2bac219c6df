"""The one-machine stack: AWS stand-ins, offline model and Telegram simulator, driven by template.yaml."""

import sys
from pathlib import Path

LAYER_PATH = Path(__file__).resolve().parent.parent / "layers" / "shared"
"""The functions' shared layer. Importable from the start, as Lambda's /opt/python is: the functions run
in this process, and `invoke` reads the running stack's records through the layer's own stores."""

if str(LAYER_PATH) not in sys.path:
    sys.path.insert(0, str(LAYER_PATH))

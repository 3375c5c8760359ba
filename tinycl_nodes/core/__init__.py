"""The learning core: numpy only — no I/O, no threads, no transport, no ROS.

Heads (``learn_one`` / ``predict_proba``), pseudo-labelers, quantisation, metrics and versioned
state. Import the classes from their modules (``tinycl_nodes.core.cwr.CWRStar``) or from here.
"""

from .clustering import NearestCentroid, TiedGaussianClusterer
from .cwr import CWRStar
from .drift import DDM
from .errors import ExtractorMismatchError, InputError, StateError, TinyclError
from .head import Head
from .latent import LatentUpperHead
from .ncm import StreamingNCM
from .quantize import Int8Quantizer
from .rce import Decision, TinyRCE
from .replay import LatentReplayHead, ReplayBuffer
from .slda import StreamingLDA
from .tinyndc import Step, TinyNDC
from .tinyol import TinyOL
from .tybox import TyBoxHead

HEADS: dict[str, type[Head]] = {cls.kind: cls for cls in
                                (CWRStar, TinyOL, StreamingNCM, StreamingLDA, LatentReplayHead, TyBoxHead,
                                 LatentUpperHead)}

__all__ = ["CWRStar", "DDM", "ExtractorMismatchError", "HEADS", "Head", "InputError", "Int8Quantizer",
           "LatentReplayHead", "LatentUpperHead", "NearestCentroid", "Decision", "TinyRCE", "ReplayBuffer", "StateError", "Step", "StreamingLDA",
           "StreamingNCM", "TiedGaussianClusterer", "TinyNDC", "TinyOL", "TinyclError", "TyBoxHead"]

"""Non-autoregressive models, one per file on the shared `NATBase` (`base.py`).

    GLAT           one slot per target token, length predicted; glancing off = vanilla NAT
    CMLM           GLAT's slots start masked; decoded by mask-predict
    NATCRF         GLAT with a low-rank CRF over neighbouring tokens, Viterbi decoding
    CTCNAT         upsample × source slots, CTC output
    DATransformer  upsample × source vertices linked into a DAG; a path is the sentence
"""
from paragen.models.nat.base import NATBase
from paragen.models.nat.cmlm import CMLM
from paragen.models.nat.crf import NATCRF
from paragen.models.nat.ctc import CTCNAT
from paragen.models.nat.dat import DATransformer
from paragen.models.nat.glat import GLAT

__all__ = ["CMLM", "CTCNAT", "DATransformer", "GLAT", "NATBase", "NATCRF"]

"""Click encoding (paper Eq. 1): one truncated squared-distance map per class.

``T^i[p] = min(cap, min over clicks q of class i of ||p - q||^2)``, ``cap`` (255) where class i
has no click. Every implementation takes clicks as a (K, 3) int32 array of ``(x, y, label)`` in
the frame being encoded and must agree exactly with :func:`encode_reference`.

* :func:`encode_reference` -- plain NumPy float64, the definition; slow on purpose.
* :func:`encode_cpu` -- windowed NumPy: a click only reaches ``isqrt(cap)`` pixels, so each
  click touches a (2r+1)^2 window instead of the whole image. The default on CPU.
* :mod:`ihp_rt.encoding.torch_encoding` -- PyTorch, any device (imports torch).
* :mod:`ihp_rt.encoding.cuda` -- the CuPy CUDA kernel ``click_maps.cu`` (imports cupy).
"""

from ihp_rt.encoding.cpu import encode_cpu
from ihp_rt.encoding.reference import DEFAULT_CAP, check_clicks, encode_reference, reach

__all__ = ["DEFAULT_CAP", "check_clicks", "encode_cpu", "encode_reference", "reach"]

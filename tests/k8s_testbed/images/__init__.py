# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Local container images for the test bed's runtime, built on this machine without a Docker daemon or registry.

``ensure_images()`` builds what is missing (the definitions are ``images/*/local*.yaml``) and returns
{reference: LocalImage}; ``ImageStore().resolve(reference)`` reads one. Formats and layout: images/README.md.
"""

from .build import BuildError, ensure_images
from .store import ImageStore, LocalImage, image_ref

__all__ = ["BuildError", "ImageStore", "LocalImage", "ensure_images", "image_ref"]

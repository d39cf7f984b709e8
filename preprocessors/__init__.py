"""Host-free preprocessors (image -> control hint). Pure torch/numpy/cv2/kornia; never imports ComfyUI
or :mod:`controlnet`. The annotators themselves arrive with issues 4 and 5."""

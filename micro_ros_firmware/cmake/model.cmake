# Generate tinycl_model.{h,c} from the ONNX model with the Python exporter (TyBox-style codegen).
#   TINYCL_PYTHON : a Python with tinycl_nodes importable (default: the repo's .venv)
#   TINYCL_ONNX   : the int8 QDQ model (default: tinycl_nodes/models/mnist_0to5_int8.onnx)
get_filename_component(TINYCL_REPO "${CMAKE_CURRENT_LIST_DIR}/../.." ABSOLUTE)
if(NOT TINYCL_PYTHON)
  set(TINYCL_PYTHON "${TINYCL_REPO}/.venv/bin/python")
endif()
if(NOT TINYCL_ONNX)
  set(TINYCL_ONNX "${TINYCL_REPO}/tinycl_nodes/models/mnist_0to5_int8.onnx")
endif()
set(TINYCL_GEN_DIR "${CMAKE_BINARY_DIR}/gen")
# the model card beside the ONNX is part of the model (preprocessing and the extractor hash); the
# feature-range sidecars (*.range.json) are not. Re-globbed at build time: a card added or removed
# by a pull must not leave a rule on a file that is gone.
get_filename_component(TINYCL_ONNX_DIR "${TINYCL_ONNX}" DIRECTORY)
file(GLOB TINYCL_CARDS CONFIGURE_DEPENDS "${TINYCL_ONNX_DIR}/*.json")
list(FILTER TINYCL_CARDS EXCLUDE REGEX "\\.range\\.json$")
add_custom_command(
  OUTPUT "${TINYCL_GEN_DIR}/tinycl_model.h" "${TINYCL_GEN_DIR}/tinycl_model.c"
  COMMAND ${CMAKE_COMMAND} -E env "PYTHONPATH=${TINYCL_REPO}"
          "${TINYCL_PYTHON}" -m tinycl_nodes.export.c_model "${TINYCL_ONNX}" --out "${TINYCL_GEN_DIR}"
  DEPENDS "${TINYCL_ONNX}" ${TINYCL_CARDS} "${TINYCL_REPO}/tinycl_nodes/export/c_model.py"
          "${TINYCL_REPO}/tinycl_nodes/preprocess.py"
  COMMENT "tinycl: generating the int8 model C source from ${TINYCL_ONNX}")
# The latent replay head's upper layers (tinycl_latent.c): generated from presets.LATENT's head on the
# fp32 model split at its cut (tinycl_nodes.export.c_latent).
add_custom_command(
  OUTPUT "${TINYCL_GEN_DIR}/tinycl_latent_model.h" "${TINYCL_GEN_DIR}/tinycl_latent_model.c"
  COMMAND ${CMAKE_COMMAND} -E env "PYTHONPATH=${TINYCL_REPO}"
          "${TINYCL_PYTHON}" -m tinycl_nodes.export.c_latent --out "${TINYCL_GEN_DIR}"
  DEPENDS "${TINYCL_REPO}/tinycl_nodes/models/mnist_0to5_fp32.onnx" "${TINYCL_REPO}/tinycl_nodes/presets.py"
          "${TINYCL_REPO}/tinycl_nodes/export/c_latent.py" "${TINYCL_REPO}/tinycl_nodes/export/latent_onnx.py"
  COMMENT "tinycl: generating the latent head's upper layers")
set(TINYCL_CORE_SOURCES
  "${CMAKE_CURRENT_LIST_DIR}/../core/src/tinycl_cnn.c"
  "${CMAKE_CURRENT_LIST_DIR}/../core/src/tinycl_learn.c"
  "${CMAKE_CURRENT_LIST_DIR}/../core/src/tinycl_rce.c"
  "${CMAKE_CURRENT_LIST_DIR}/../core/src/tinycl_state.c"
  "${CMAKE_CURRENT_LIST_DIR}/../core/src/tinycl_undo.c"
  "${TINYCL_GEN_DIR}/tinycl_model.c")
# the latent head is its own list: its 295 KB of trainable weights stay out of the TinyNDC figures
set(TINYCL_LATENT_SOURCES
  "${CMAKE_CURRENT_LIST_DIR}/../core/src/tinycl_latent.c"
  "${TINYCL_GEN_DIR}/tinycl_latent_model.c")
set(TINYCL_CORE_INCLUDES "${CMAKE_CURRENT_LIST_DIR}/../core/include" "${TINYCL_GEN_DIR}")

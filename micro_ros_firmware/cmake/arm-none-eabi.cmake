# Cortex-M7 (STM32H7 / OpenMV H7 Plus; QEMU mps2-an500), hard float, double-precision FPU.
set(CMAKE_SYSTEM_NAME Generic)
set(CMAKE_SYSTEM_PROCESSOR arm)
set(CMAKE_C_COMPILER arm-none-eabi-gcc)
set(CMAKE_TRY_COMPILE_TARGET_TYPE STATIC_LIBRARY)
set(TINYCL_CPU_FLAGS "-mcpu=cortex-m7 -mfpu=fpv5-d16 -mfloat-abi=hard -mthumb")
set(CMAKE_C_FLAGS_INIT "${TINYCL_CPU_FLAGS}")
set(CMAKE_EXE_LINKER_FLAGS_INIT "${TINYCL_CPU_FLAGS}")

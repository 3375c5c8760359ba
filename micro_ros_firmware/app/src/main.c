/* tinycl micro-ROS application: a thin rclc layer over the C core (micro_ros_firmware/core).
 *
 * Publishes on the same topics and types as the Python nodes (namespace /<robot>/tinycl):
 *   features    tinycl_nodes/msg/Features    (reliable)
 *   predictions tinycl_nodes/msg/Prediction  (reliable)
 *   head        tinycl_nodes/msg/Head        (reliable; weights + the C state blob every batch)
 * Subscribes:
 *   label_answer tinycl_nodes/msg/LabelAnswer  (a person's label for the last sample)
 *   global_head  tinycl_nodes/msg/Head         (fleet average: loaded if the extractor hash matches)
 * Reconnects: pings the agent every second; when it is gone, destroys the entities and recreates
 * them once it answers again (the learned state lives in the core and is not touched).
 * All message memory is static (fixed-capacity sequences below).
 *
 * NOT built in CI (needs the micro-ROS libraries); keep logic in the core. The frame source
 * (camera on the OpenMV H7 Plus, sensor window on the Nucleo) is board code: board_next_frame(). */
#include <rcl/rcl.h>
#include <rclc/executor.h>
#include <rclc/rclc.h>
#include <rmw_microros/rmw_microros.h>
#include <string.h>

#include <tinycl_nodes/msg/features.h>
#include <tinycl_nodes/msg/head.h>
#include <tinycl_nodes/msg/label_answer.h>
#include <tinycl_nodes/msg/prediction.h>

#include "tinycl.h"

#ifndef TINYCL_NAMESPACE
#define TINYCL_NAMESPACE "robot1/tinycl"
#endif
#define F TINYCL_N_FEATURES
#define STATE_CAP TINYCL_CWR_STATE_BYTES(TINYCL_MAX_CLASSES)

/* board layer (camera / sensor window → 28×28 uint8), provided per board */
int board_next_frame(uint8_t *pixels);
extern const float tinycl_init_x[];     /* k labelled samples per class (from the exporter) */
extern const int32_t tinycl_init_y[];
extern const uint32_t tinycl_init_n;

static tinycl_ndc_t g_ndc;
static uint8_t g_pixels[TINYCL_IN_H * TINYCL_IN_W];
static float g_x[F];
static int8_t g_q[F];
static uint32_t g_sample_id;
static int g_connected;

/* static message memory */
static tinycl_nodes__msg__Features m_feat;
static tinycl_nodes__msg__Prediction m_pred;
static tinycl_nodes__msg__Head m_head, m_global;
static tinycl_nodes__msg__LabelAnswer m_answer;
static float s_feat_data[F], s_head_w[TINYCL_MAX_CLASSES * F], s_global_w[TINYCL_MAX_CLASSES * F];
static uint8_t s_state[STATE_CAP], s_global_state[STATE_CAP];
static tinycl_nodes__msg__ClassInfo s_classes[TINYCL_MAX_CLASSES], s_global_classes[TINYCL_MAX_CLASSES];
static char s_hash[65] = TINYCL_MODEL_SHA256, s_kind[] = "cwr";

static rcl_allocator_t allocator;
static rclc_support_t support;
static rcl_node_t node;
static rcl_publisher_t pub_feat, pub_pred, pub_head;
static rcl_subscription_t sub_answer, sub_global;
static rclc_executor_t executor;

static void static_messages(void) {
    m_feat.data.data = s_feat_data; m_feat.data.capacity = F;
    m_feat.extractor_hash.data = s_hash; m_feat.extractor_hash.size = 64; m_feat.extractor_hash.capacity = 65;
    m_head.weights.data = s_head_w; m_head.weights.capacity = TINYCL_MAX_CLASSES * F;
    m_head.state.data = s_state; m_head.state.capacity = STATE_CAP;
    m_head.classes.data = s_classes; m_head.classes.capacity = TINYCL_MAX_CLASSES;
    m_head.kind.data = s_kind; m_head.kind.size = 3; m_head.kind.capacity = 4;
    m_head.extractor_hash = m_feat.extractor_hash;
    m_global.weights.data = s_global_w; m_global.weights.capacity = TINYCL_MAX_CLASSES * F;
    m_global.state.data = s_global_state; m_global.state.capacity = STATE_CAP;
    m_global.classes.data = s_global_classes; m_global.classes.capacity = TINYCL_MAX_CLASSES;
}

static void publish_head(void) {
    const tinycl_cwr_t *h = &g_ndc.cwr;
    size_t n = 0;
    m_head.n_features = F;
    m_head.n_seen = h->n_seen;
    m_head.version++;
    m_head.classes.size = h->n_classes;
    for (uint32_t r = 0; r < h->n_classes; r++) {
        s_classes[r].id = (uint32_t)h->classes[r];
        s_classes[r].sample_count = h->past[r] + h->cur[r];
        memcpy(&s_head_w[r * F], h->cw[r], sizeof h->cw[r]);
    }
    m_head.weights.size = h->n_classes * F;
    if (tinycl_cwr_save(h, s_state, sizeof s_state, &n) == TINYCL_OK) m_head.state.size = n;
    (void)rcl_publish(&pub_head, &m_head, NULL);
}

static void on_answer(const void *msg) {   /* a person's label for the last sample: learn it */
    const tinycl_nodes__msg__LabelAnswer *a = msg;
    tinycl_step_t st;
    if (a->class_id >= 0) (void)tinycl_ndc_step(&g_ndc, g_x, a->class_id, &st);
}

static void on_global(const void *msg) {   /* the fleet's head: refused by the core if malformed or
                                              made on another extractor (hash inside the blob) */
    const tinycl_nodes__msg__Head *h = msg;
    if (h->state.size) (void)tinycl_cwr_load(&g_ndc.cwr, h->state.data, h->state.size);
}

static int create_entities(void) {
    allocator = rcl_get_default_allocator();
    if (rclc_support_init(&support, 0, NULL, &allocator)) return 0;
    if (rclc_node_init_default(&node, "tinycl_board", TINYCL_NAMESPACE, &support)) return 0;
    const rosidl_message_type_support_t *tf = ROSIDL_GET_MSG_TYPE_SUPPORT(tinycl_nodes, msg, Features);
    const rosidl_message_type_support_t *tp = ROSIDL_GET_MSG_TYPE_SUPPORT(tinycl_nodes, msg, Prediction);
    const rosidl_message_type_support_t *th = ROSIDL_GET_MSG_TYPE_SUPPORT(tinycl_nodes, msg, Head);
    const rosidl_message_type_support_t *ta = ROSIDL_GET_MSG_TYPE_SUPPORT(tinycl_nodes, msg, LabelAnswer);
    if (rclc_publisher_init_default(&pub_feat, &node, tf, "features") ||
        rclc_publisher_init_default(&pub_pred, &node, tp, "predictions") ||
        rclc_publisher_init_default(&pub_head, &node, th, "head") ||
        rclc_subscription_init_default(&sub_answer, &node, ta, "label_answer") ||
        rclc_subscription_init_default(&sub_global, &node, th, "global_head"))
        return 0;
    executor = rclc_executor_get_zero_initialized_executor();
    if (rclc_executor_init(&executor, &support.context, 2, &allocator) ||
        rclc_executor_add_subscription(&executor, &sub_answer, &m_answer, on_answer, ON_NEW_DATA) ||
        rclc_executor_add_subscription(&executor, &sub_global, &m_global, on_global, ON_NEW_DATA))
        return 0;
    return 1;
}

static void destroy_entities(void) {
    rmw_context_t *ctx = rcl_context_get_rmw_context(&support.context);
    (void)rmw_uros_set_context_entity_destroy_session_timeout(ctx, 0);
    (void)rcl_publisher_fini(&pub_feat, &node);
    (void)rcl_publisher_fini(&pub_pred, &node);
    (void)rcl_publisher_fini(&pub_head, &node);
    (void)rcl_subscription_fini(&sub_answer, &node);
    (void)rcl_subscription_fini(&sub_global, &node);
    (void)rclc_executor_fini(&executor);
    (void)rcl_node_fini(&node);
    (void)rclc_support_fini(&support);
}

static void process_frame(void) {
    tinycl_step_t st;
    tinycl_features_q(g_pixels, g_q);
    tinycl_dequantize(g_q, g_x);
    if (tinycl_ndc_step(&g_ndc, g_x, -1, &st) != TINYCL_OK || !g_connected) return;
    memcpy(s_feat_data, g_x, sizeof g_x);
    m_feat.data.size = F;
    m_feat.sample_id = m_pred.sample_id = g_sample_id++;
    m_feat.true_label = -1;
    m_pred.class_id = st.prediction;
    m_pred.confidence = st.confidence;
    (void)rcl_publish(&pub_feat, &m_feat, NULL);
    (void)rcl_publish(&pub_pred, &m_pred, NULL);
    if (g_ndc.cwr.n_batch == 0) publish_head(); /* a batch was just consolidated */
}

void setup(void);
void loop(void);

void setup(void) {
    static_messages();
    tinycl_ndc_init(&g_ndc, 0.02f, 32, 0);
    tinycl_ndc_init_from_labelled(&g_ndc, tinycl_init_x, tinycl_init_y, tinycl_init_n);
}

void loop(void) {  /* Arduino-style main loop (micro_ros_platformio's framework) */
    static uint32_t last_ping = 0;
    extern uint32_t millis(void);
    if (millis() - last_ping > 1000) {
        last_ping = millis();
        const int alive = rmw_uros_ping_agent(100, 1) == RMW_RET_OK;
        if (alive && !g_connected) g_connected = create_entities();
        else if (!alive && g_connected) { destroy_entities(); g_connected = 0; }
    }
    if (board_next_frame(g_pixels)) {
        process_frame();  /* learning continues without an agent; publishing needs one */
    }
    if (g_connected) (void)rclc_executor_spin_some(&executor, RCL_MS_TO_NS(1));
}

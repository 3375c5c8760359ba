/* tinycl micro-ROS application: a thin rclc layer over the C core (micro_ros_firmware/core).
 *
 * Same topics and types as the Python nodes, under /<TINYCL_DEVICE>/tinycl:
 *   publishes  features       tinycl_nodes/msg/Features      reliable
 *              predictions    tinycl_nodes/msg/Prediction    reliable
 *              label_request  tinycl_nodes/msg/LabelRequest  reliable (a sample the board is unsure of)
 *              head           tinycl_nodes/msg/Head          reliable + transient local, depth 1 (the
 *                                                            exporter's and fleet bridge's "latched" reader)
 *              label_status   std_msgs/msg/String            reliable: its verdict on each answer to one of its
 *                                                            questions, JSON as the labeler's (a label app shows it)
 *              classes        tinycl_nodes/msg/ClassList     latched as head: the learner's classes, names and
 *                                                            counts (the latent app's too, which has no head)
 *   and        /diagnostics   diagnostic_msgs/msg/DiagnosticArray  reliable, about once a second: the board's
 *                                                            health beside every other node's (see below)
 *   subscribes label_answer   tinycl_nodes/msg/LabelAnswer   applied to the sample it answers (request id), or
 *                                                            the question dropped (TINYCL_NO_CLASS: skipped)
 *              global_head    tinycl_nodes/msg/Head          the fleet's head, loaded from its linear form
 *              rename_class   tinycl_nodes/msg/LabelAnswer   a person's new name for one of its classes
 *              label_correction tinycl_nodes/msg/LabelAnswer a person's change (or, TINYCL_NO_CLASS, withdrawal)
 *                                                            of an answer (TinyNDC app: the system replayed)
 * Connection: waits for the agent, creates the entities, pings it every TINYCL_PING_PERIOD_MS while
 * connected (TINYCL_PING_TIMEOUT_MS × TINYCL_PING_ATTEMPTS, so a large message arriving meanwhile does
 * not look like a lost agent) and on any failed publish; when it is gone the entities are destroyed and
 * recreated once it answers again. Learning never waits for the agent: the state lives in the core.
 * Every message buffer is static (sizes below); every rcl/rclc return value is checked.
 * The learner is a build option (CMake TINYCL_APP_HEAD): cwr (TinyNDC: the clusterer's pseudo-labels and the
 * answers train CWR* on the features; its head is published; its state and the app's record — the boot number, the global head
 * applied, the class names, the label requests awaiting an answer — are kept in the board's storage, restored at start-up) or latent (TINYCL_APP_LATENT: the latent replay
 * head of tinycl_latent.h trained on the CNN's own int8 activations at the cut, from the same forward pass as
 * the features, by the answers only; its state, kept in the board's storage, is restored at start-up and
 * saved after each training round and at the end; no head message: its upper layers and replay memory are
 * ~0.6 MB, far beyond a micro-ROS message of this build, and a Head of its classifier rows alone is no head
 * a reader could use; a global head is refused).
 * Board-specific code (clock, transport, sensor, console, identity, storage) is in boards/<board>.*, behind board.h.
 *
 * Log lines (board_log) that tools read: "P <i> <sample_id> <prediction> <pseudo-label>" per frame,
 * "EV <i> answer <sample_id> <label>" / "EV <i> global <version>" when a message changed the learner
 * before frame i, "A <sample_id>" when the agent confirmed a label request, "SENT ..." counters and "DONE" at
 * the end of a replayed stream. */
#include <rcl/error_handling.h>
#include <rcl/rcl.h>
#include <rclc/executor.h>
#include <rclc/rclc.h>
#include <rmw_microros/rmw_microros.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h> /* strcasecmp */

#include <diagnostic_msgs/msg/diagnostic_array.h>
#include <diagnostic_msgs/msg/diagnostic_status.h>
#include <diagnostic_msgs/msg/key_value.h>
#include <std_msgs/msg/string.h>
#include <tinycl_nodes/msg/features.h>
#include <tinycl_nodes/msg/class_list.h>
#include <tinycl_nodes/msg/head.h>
#include <tinycl_nodes/msg/label_answer.h>
#include <tinycl_nodes/msg/label_request.h>
#include <tinycl_nodes/msg/prediction.h>

#include "board.h"
#include "tinycl.h"
#include "tinycl_init.h"
#ifndef TINYCL_APP_LATENT
#define TINYCL_APP_LATENT 0
#endif
#if TINYCL_APP_LATENT
#include "tinycl_latent.h"
#if TINYCL_LATENT_F != TINYCL_CUT_F
#error "the latent head's cut is not the CNN's last conv block output"
#endif
#endif

#ifndef TINYCL_DEVICE
#define TINYCL_DEVICE "board1"
#endif
#ifndef TINYCL_DOMAIN_ID
#define TINYCL_DOMAIN_ID 0
#endif
#ifndef TINYCL_RMW_DROP_COUNT /* 1: the link wraps rmw_microxrcedds's receive buffer allocator (see below) */
#define TINYCL_RMW_DROP_COUNT 0
#endif
#ifndef TINYCL_ASK_BELOW /* ask a person when the confidence is below this, or (TinyNDC) head and clusterer disagree, or
                          * (latent) the head has not trained yet */
#define TINYCL_ASK_BELOW 0.5f
#endif
#ifndef TINYCL_ASK_GAP /* at most one label request every TINYCL_ASK_GAP frames */
#define TINYCL_ASK_GAP 8u
#endif
#define TINYCL_PUBLISH_TIMEOUT_MS 250 /* wait for a reliable publish's confirmation (micro-ROS default 1000) */
#define TINYCL_HEAD_TIMEOUT_MS 1000   /* the head is fragmented: cut short, Cyclone refused the sample */
#define TINYCL_PING_PERIOD_MS 1000u
#define TINYCL_PING_TIMEOUT_MS 500
#define TINYCL_PING_ATTEMPTS 3
#define TINYCL_WAIT_PERIOD_MS 200u
#ifndef TINYCL_SAVE_PERIOD_MS /* the TinyNDC app saves a consolidated batch at most this often (flash wear) */
#define TINYCL_SAVE_PERIOD_MS 60000u
#endif
#define TINYCL_FLUSH_MS 3000u /* after a replayed stream ends: time to deliver and receive the last messages */
#ifndef TINYCL_DIAG_PERIOD_MS /* the board's status on /diagnostics, as the Python nodes' diagnostics_period_s: */
#define TINYCL_DIAG_PERIOD_MS 1000u /* ~720 B reliable, ~65 ms of a 115,200-baud UART: a slow link may want longer */
#endif
#define TINYCL_DIAG_HOLD_MS 10000u  /* after a (re)connection a report's findings are repeated this long (see below) */

#define F TINYCL_N_FEATURES
#define MAXC TINYCL_MAX_CLASSES
#define PIX (TINYCL_IN_H * TINYCL_IN_W)
#define RING 8u       /* label requests awaiting an answer */
#define NAME_CAP (TINYCL_NAME_BYTES + 1u) /* class names, answered_by, frame ids: any name the graph keeps */
#define OLD_NAME_CAP 32u                     /* the record's names before, still restored (read_record) */
#define ID_CAP 48u    /* request ids */
#define HASH_CAP 72u  /* sha256 hex + room to see a longer one */
#define RX_CLASSES (MAXC + 1u) /* one more than the core holds: an oversized head is seen and refused */

/* ------------------------------------------------------------------------------ state */
static tinycl_ndc_t g_ndc;
#if !TINYCL_APP_LATENT
/* A person's answers can be changed or withdrawn (label_correction): the system learns through the undo log, which
 * replays the last TINYCL_UNDO_MAX samples; an answer of this boot is found by its question (boot, sample id). */
static tinycl_undo_t g_undo;
#define ANSWERED 16u /* this boot's answers that a correction can name */
typedef struct {
    uint32_t boot, sample_id, tag; /* tag 0: a free slot */
} answered_t;
static answered_t g_answered[ANSWERED];
static uint32_t g_tags; /* the last answer's tag */
#endif
#if TINYCL_APP_LATENT
static tinycl_latent_t g_lat;
static int8_t g_cut[TINYCL_CUT_F]; /* the CNN's int8 activations at the cut, from the frame's forward pass */
static float g_scores[MAXC];
#endif
static uint8_t g_pixels[PIX];
static int8_t g_q[F];
static float g_x[F];
static uint32_t g_frame;       /* frames processed */
static uint32_t g_head_version;
static uint32_t g_last_ask;
static char g_names[MAXC][NAME_CAP]; /* class names by row of the head ("" = the id in decimal) */
static int32_t g_name_ids[MAXC];
static uint32_t g_n_names;

typedef struct {
    uint32_t boot;      /* the boot that asked (a restored request keeps its id across a reset) */
    uint32_t sample_id; /* 0 = free slot (sample ids start at 1) */
#if TINYCL_APP_LATENT
    int8_t cut[TINYCL_CUT_F]; /* what the latent head learns from */
#else
    float x[F];
#endif
} pending_t;
#if TINYCL_APP_LATENT
#define PENDING_DATA sizeof(((pending_t *)0)->cut)
#else
#define PENDING_DATA sizeof(((pending_t *)0)->x)
#endif
static pending_t g_pending[RING];

typedef enum { WAITING, CONNECTED, LOST } link_t; /* LOST: a failed ping, entities still to destroy */
static link_t g_link = WAITING;
static uint32_t g_sent_feat, g_sent_pred, g_sent_head, g_sent_req, g_sent_status, g_sent_classes, g_sent_diag, g_failed;
static uint32_t g_answers, g_globals, g_refused, g_reconnects;
static uint32_t g_received; /* messages handed to on_answer / on_global, applied or not (messages_received) */
static uint64_t g_uptime_ms; /* since boot, summed from board_millis() steps in the loop: board_millis() wraps */
static uint32_t g_lost, g_lost_logged; /* received messages the middleware dropped (no free receive buffer) */
static uint32_t g_not_learned; /* frames predicted and published, not learned: a full table had no row for them */
static uint32_t g_lost_at; /* board_millis() when the agent was lost (0 = never) */
static uint32_t g_global_version; /* last global head applied: a latched one re-sent after a reconnect is not applied twice */
static int g_global_applied;      /* one was applied, by this boot or a saved state (g_global_version is its version) */

/* ------------------------------------------------------------------------------ messages (static memory) */
static tinycl_nodes__msg__Features m_feat;
static tinycl_nodes__msg__Prediction m_pred;
static tinycl_nodes__msg__Head m_head, m_global;
static tinycl_nodes__msg__LabelAnswer m_answer, m_rename;
static tinycl_nodes__msg__LabelRequest m_req;
static std_msgs__msg__String m_status;
static tinycl_nodes__msg__ClassList m_classes; /* the learner's classes (publish_head) */
#define REASON_CAP 160u /* why an answer was refused, in words (label_status) */
static char s_status[2 * (ID_CAP + NAME_CAP + REASON_CAP) + 160]; /* a verdict (label_status): JSON, id, name, why */
static float s_feat[F], s_req_feat[F], s_head_w[MAXC * F], s_head_b[MAXC];
static float s_glob_w[RX_CLASSES * F], s_glob_b[RX_CLASSES];
static uint8_t s_glob_state[1], s_head_state[1], s_req_pixels[PIX];
static tinycl_nodes__msg__ClassInfo s_head_classes[MAXC], s_glob_classes[RX_CLASSES], s_req_cand[MAXC];
static char s_head_names[MAXC][NAME_CAP], s_glob_names[RX_CLASSES][NAME_CAP];
static char s_pred_name[NAME_CAP], s_req_id[ID_CAP], s_empty[1] = "";
static char s_hash[] = TINYCL_MODEL_SHA256, s_kind[] = TINYCL_HEAD_KIND, s_mono8[] = "mono8";
static char s_reason[] = "low confidence";
/* the strings a received LabelAnswer is decoded into (label_answer, rename_class, label_correction) */
typedef struct {
    char frame[NAME_CAP], req[ID_CAP], name[NAME_CAP], by[NAME_CAP];
} answer_rx_t;
static answer_rx_t rx_answer_buf, rx_rename_buf;
#if !TINYCL_APP_LATENT
static tinycl_nodes__msg__LabelAnswer m_correction;
static answer_rx_t rx_correction_buf;
static rcl_subscription_t sub_correction;
#endif
static char g_frame_id[NAME_CAP], g_kind[NAME_CAP], g_hash[HASH_CAP];
/* /diagnostics: one status of at most DIAG_VALUES key/value pairs (publish_diagnostics) */
#define DIAG_VALUES 20u     /* key/value pairs at most */
#define DIAG_KEY_CAP 24u
#define DIAG_VALUE_CAP 16u  /* a u32 in decimal, "none yet" */
#define DIAG_MSG_CAP 160u
#define DIAG_NAME_CAP 64u   /* the node's fully qualified name */
#define DIAG_ID_CAP 48u     /* board_id() */

static diagnostic_msgs__msg__DiagnosticArray m_diag;
static diagnostic_msgs__msg__DiagnosticStatus s_diag;
static diagnostic_msgs__msg__KeyValue s_diag_kv[DIAG_VALUES];
static char s_diag_keys[DIAG_VALUES][DIAG_KEY_CAP], s_diag_vals[DIAG_VALUES][DIAG_VALUE_CAP];
static char s_diag_name[DIAG_NAME_CAP], s_diag_msg[DIAG_MSG_CAP], s_diag_hw[DIAG_ID_CAP];

static rcl_allocator_t allocator;
static rclc_support_t support;
static rcl_node_t node;
static rcl_publisher_t pub_feat, pub_pred, pub_head, pub_req, pub_status, pub_classes, pub_diag;
#define N_PUBS 7 /* RMW_UXRCE_MAX_PUBLISHERS in app/tinycl.meta must allow as many */
#define STATUS_PUB 4  /* g_pubs[STATUS_PUB] is pub_status: it exists once n_pubs > STATUS_PUB */
#define CLASSES_PUB 5 /* and pub_classes */
/* in the order create_entities makes them: the first n_pubs exist */
static rcl_publisher_t *const g_pubs[N_PUBS] = {&pub_feat,   &pub_pred,    &pub_req, &pub_head,
                                                &pub_status, &pub_classes, &pub_diag};
static int n_pubs;
static rcl_subscription_t sub_answer, sub_global, sub_rename;
static rclc_executor_t executor;

static void logf_(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void logf_(const char *fmt, ...) {
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    board_log(line);
}

static void set_str(rosidl_runtime_c__String *s, char *buf, size_t cap, const char *text) {
    /* never a NULL string on the wire: Cyclone DDS refuses a CDR string without its terminating zero */
    size_t n = strlen(text);
    if (n >= cap) n = cap - 1;
    if (buf != text) memmove(buf, text, n);
    buf[n] = '\0';
    s->data = buf;
    s->size = n;
    s->capacity = cap;
}

/* A received string longer than its buffer: rosidl_typesupport_microxrcedds_c takes it as empty (size 0, micro-CDR's
 * error cleared) and leaves the buffer as it was, so read as text it was the last message's (an answer's new class
 * learned as the class named before it). Before each take (rx_buffers) every buffer therefore starts with RX_UNREAD,
 * a byte no UTF-8 text holds: a decoded string overwrites it, one too long for its buffer does not (rx_too_long). */
#define RX_UNREAD '\xff'

static void rx_str(rosidl_runtime_c__String *s, char *buf, size_t cap) {
    buf[0] = RX_UNREAD;
    buf[1] = '\0';
    s->data = buf;
    s->size = 0;
    s->capacity = cap;
}

static int rx_too_long(const rosidl_runtime_c__String *s) { return s->size == 0 && s->data[0] == RX_UNREAD; }

/* The bytes of the UTF-8 character at p (1-4), 0 if none starts there (strict, as Python decodes: no overlong form,
 * no surrogate, nothing past U+10FFFF). */
static unsigned utf8_char(const unsigned char *p) {
    const unsigned c = p[0];
    unsigned n, lo = 0x80, hi = 0xBF;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) n = 2;
    else if (c >= 0xE0 && c <= 0xEF) n = 3, lo = c == 0xE0 ? 0xA0 : lo, hi = c == 0xED ? 0x9F : hi;
    else if (c >= 0xF0 && c <= 0xF4) n = 4, lo = c == 0xF0 ? 0x90 : lo, hi = c == 0xF4 ? 0x8F : hi;
    else return 0;
    if (p[1] < lo || p[1] > hi) return 0;
    for (unsigned k = 2; k < n; k++)
        if ((p[k] & 0xC0) != 0x80) return 0;
    return n;
}

/* What is wrong with a class name the graph sent, NULL if nothing: the graph's rule (core.names: at most
 * TINYCL_NAME_CHARS characters, no control character) as far as a board can check it (it neither normalises nor
 * knows Unicode's categories), and UTF-8. A name the board keeps goes out again in its head, where the graph refuses
 * one of more characters. */
static const char *name_problem(const rosidl_runtime_c__String *s) {
    static char why[48];
    if (rx_too_long(s)) {
        snprintf(why, sizeof why, "is longer than %u bytes", (unsigned)TINYCL_NAME_BYTES);
        return why;
    }
    uint32_t chars = 0;
    for (const unsigned char *p = (const unsigned char *)s->data; *p; chars++) {
        const unsigned n = utf8_char(p);
        if (!n) return "is not UTF-8";
        if (p[0] < 0x20 || p[0] == 0x7F || (p[0] == 0xC2 && p[1] < 0xA0)) return "holds a control character";
        p += n;
    }
    if (chars <= TINYCL_NAME_CHARS) return NULL;
    snprintf(why, sizeof why, "has more than %u characters", (unsigned)TINYCL_NAME_CHARS);
    return why;
}

/* A LabelAnswer's strings into b (rx_str). */
static void rx_answer(tinycl_nodes__msg__LabelAnswer *m, answer_rx_t *b) {
    rx_str(&m->header.frame_id, b->frame, NAME_CAP);
    rx_str(&m->request_id, b->req, ID_CAP);
    rx_str(&m->new_class_name, b->name, NAME_CAP);
    rx_str(&m->answered_by, b->by, NAME_CAP);
}

/* The receive buffers, each string's first byte RX_UNREAD (rx_str): at start-up and before each take. Every string and
 * sequence has its capacity (without it the message is never delivered). */
static void rx_buffers(void) {
    rx_answer(&m_answer, &rx_answer_buf);
    rx_answer(&m_rename, &rx_rename_buf);
#if !TINYCL_APP_LATENT
    rx_answer(&m_correction, &rx_correction_buf);
#endif
    rx_str(&m_global.header.frame_id, g_frame_id, NAME_CAP);
    rx_str(&m_global.kind, g_kind, NAME_CAP);
    rx_str(&m_global.extractor_hash, g_hash, HASH_CAP);
    m_global.classes.data = s_glob_classes;
    m_global.classes.capacity = RX_CLASSES;
    for (uint32_t r = 0; r < RX_CLASSES; r++) rx_str(&s_glob_classes[r].name, s_glob_names[r], NAME_CAP);
    m_global.weights.data = s_glob_w;
    m_global.weights.capacity = RX_CLASSES * F;
    m_global.bias.data = s_glob_b;
    m_global.bias.capacity = RX_CLASSES;
    m_global.state.data = s_glob_state;
    m_global.state.capacity = sizeof s_glob_state;
}

static void static_messages(void) {
    set_str(&m_feat.header.frame_id, s_empty, 1, "");
    m_feat.data.data = s_feat;
    m_feat.data.capacity = F;
    set_str(&m_feat.extractor_hash, s_hash, sizeof s_hash, s_hash);
    m_feat.true_label = tinycl_nodes__msg__Features__UNKNOWN_LABEL;

    set_str(&m_pred.header.frame_id, s_empty, 1, "");
    set_str(&m_pred.class_name, s_pred_name, NAME_CAP, "");

    set_str(&m_head.header.frame_id, s_empty, 1, "");
    set_str(&m_classes.header.frame_id, s_empty, 1, "");
    set_str(&m_head.kind, s_kind, sizeof s_kind, s_kind);
    set_str(&m_head.extractor_hash, s_hash, sizeof s_hash, s_hash);
    m_head.classes.data = s_head_classes;
    m_head.classes.capacity = MAXC;
    for (uint32_t r = 0; r < MAXC; r++) set_str(&s_head_classes[r].name, s_head_names[r], NAME_CAP, "");
    m_head.weights.data = s_head_w;
    m_head.weights.capacity = MAXC * F;
    m_head.bias.data = s_head_b;
    m_head.bias.capacity = MAXC;
    m_head.state.data = s_head_state; /* the linear form is the head; no blob */
    m_head.state.capacity = 1;
    m_head.n_features = F;

    set_str(&m_req.header.frame_id, s_empty, 1, "");
    set_str(&m_req.request_id, s_req_id, ID_CAP, "");
    set_str(&m_req.reason, s_reason, sizeof s_reason, s_reason);
    set_str(&m_req.picture.header.frame_id, s_empty, 1, "");
    set_str(&m_req.picture.encoding, s_mono8, sizeof s_mono8, s_mono8);
    m_req.picture.height = TINYCL_IN_H;
    m_req.picture.width = TINYCL_IN_W;
    m_req.picture.step = TINYCL_IN_W;
    m_req.picture.data.data = s_req_pixels;
    m_req.picture.data.capacity = PIX;
    m_req.candidates.data = s_req_cand;
    m_req.candidates.capacity = MAXC;
    for (uint32_t r = 0; r < MAXC; r++) set_str(&s_req_cand[r].name, s_head_names[r], NAME_CAP, "");
    m_req.features = m_feat;
    m_req.features.data.data = s_req_feat;

    rx_buffers();

    set_str(&m_diag.header.frame_id, s_empty, 1, "");
    m_diag.status.data = &s_diag;
    m_diag.status.size = m_diag.status.capacity = 1;
    set_str(&s_diag.name, s_diag_name, DIAG_NAME_CAP, ""); /* the node's name once it exists (create_entities) */
    set_str(&s_diag.hardware_id, s_diag_hw, DIAG_ID_CAP, board_id());
    s_diag.values.data = s_diag_kv;
    s_diag.values.capacity = DIAG_VALUES;
}

/* ------------------------------------------------------------------------------ class names */
static const char *class_name(int32_t id, char *buf, size_t cap) {
    for (uint32_t i = 0; i < g_n_names; i++)
        if (g_name_ids[i] == id) return g_names[i];
    snprintf(buf, cap, "%ld", (long)id);
    return buf;
}

static void remember_name(int32_t id, const char *name) {
    if (!name[0]) return;
    uint32_t i = 0;
    while (i < g_n_names && g_name_ids[i] != id) i++;
    if (i == MAXC) return;
    if (i == g_n_names) g_n_names++;
    g_name_ids[i] = id;
    snprintf(g_names[i], NAME_CAP, "%s", name);
}

static void stamp_now(builtin_interfaces__msg__Time *t) {
    const int64_t ns = rmw_uros_epoch_synchronized() ? rmw_uros_epoch_nanos() : (int64_t)board_millis() * 1000000;
    t->sec = (int32_t)(ns / 1000000000);
    t->nanosec = (uint32_t)(ns % 1000000000);
}

/* ------------------------------------------------------------------------------ the learner's state */
/* The board's storage holds the learner's blob — the TinyNDC state (tinycl_ndc_save: the clusterer's, then the
 * head's) or the latent head's (kind 4, streamed) — followed by the app's record: the boot number (the middle part
 * of this boot's request ids, so that an answer to a request made before a reset never meets another sample of the
 * same id; without a record, the agent's clock: number_boot_by_clock), whether and which global head was applied
 * (a latched one re-sent after a reset must not replace what was learned since), the class names, the label requests awaiting an answer (their boot, sample id and what the learner
 * learns from: an answer to one comes back after a reset too), the record's size and a CRC-32 of it. Little-endian
 * u32s: boot, global applied, global version, names, then the layout (MAXC, NAME_CAP, RING, the bytes of a
 * request's data) so that a reader needs no other fact; MAXC × (id, NAME_CAP bytes); RING × (boot, sample id, data);
 * size; CRC. Saved at boot (a new boot number), after each answer and global head applied, after a consolidated
 * TinyNDC batch at most every TINYCL_SAVE_PERIOD_MS or a latent training round, and when the stream ends; a failed
 * save keeps the last saved state. */
#define RECORD_FIXED 8u
#define RECORD_SLOT (8u + PENDING_DATA)
/* a record whose names take `cap` bytes each: NAME_CAP, or OLD_NAME_CAP as boards wrote it before (still restored) */
#define RECORD_HEAD_FOR(cap) (RECORD_FIXED * 4u + MAXC * (4u + (cap)))
#define RECORD_BYTES_FOR(cap) (RECORD_HEAD_FOR(cap) + RING * RECORD_SLOT + 4u + 4u)
#define RECORD_HEAD RECORD_HEAD_FOR(NAME_CAP)
#define RECORD_BYTES RECORD_BYTES_FOR(NAME_CAP)
static uint8_t g_record[RECORD_HEAD]; /* the requests go to and from g_pending directly */
static uint32_t n_known(void);
static uint32_t g_boot;                 /* boots of this board with this storage, this one included */
static int g_boot_recounted;            /* no whole record: the count started again (number_boot_by_clock) */
static uint32_t g_saved_at, g_saved_seen;
static uint32_t g_saves, g_save_failures, g_saved_frame; /* this boot's saves landed / failed; g_frame at the last */
static const char *g_save_error; /* why the last save failed; NULL once one landed (/diagnostics: ERROR while set) */
static int g_no_storage; /* the board has none (BOARD_NO_STORAGE): /diagnostics WARNs, as it is no failure */
static int g_restored; /* the learner holds a saved state (else its initial one) */
#define OTHER_GRID (-100) /* read_learner: a latent head whose codes are on another cut grid (not a core code) */

static const void *slot_data(const pending_t *q) {
#if TINYCL_APP_LATENT
    return q->cut;
#else
    return q->x;
#endif
}

/* Writes the record after the learner's blob (its CRC runs over the head, then the requests, then the size). */
static int write_record(void) {
    const uint32_t fixed[RECORD_FIXED] = {g_boot, (uint32_t)g_global_applied, g_global_version, g_n_names,
                                          MAXC, NAME_CAP, RING, (uint32_t)PENDING_DATA};
    uint8_t *p = g_record;
    memcpy(p, fixed, sizeof fixed); /* little-endian, as the Cortex-M and the hosts this runs on */
    p += sizeof fixed;
    for (uint32_t i = 0; i < MAXC; i++, p += 4 + NAME_CAP) {
        memcpy(p, &g_name_ids[i], 4);
        memcpy(p + 4, g_names[i], NAME_CAP);
    }
    uint32_t crc = tinycl_crc32(g_record, RECORD_HEAD);
    int rc = board_state_write(g_record, RECORD_HEAD);
    for (uint32_t i = 0; i < RING && rc == 0; i++) {
        const pending_t *q = &g_pending[i];
        const uint32_t ids[2] = {q->boot, q->sample_id};
        crc = tinycl_crc32_update(tinycl_crc32_update(crc, (const uint8_t *)ids, 8), slot_data(q), PENDING_DATA);
        rc = board_state_write((const uint8_t *)ids, 8) || board_state_write(slot_data(q), PENDING_DATA);
    }
    const uint32_t size = RECORD_BYTES, tail[2] = {size, tinycl_crc32_update(crc, (const uint8_t *)&size, 4)};
    return rc || board_state_write((const uint8_t *)tail, 8);
}

/* The size of the record that ends the `len` bytes of storage if it is whole (size, CRC, layout, values): then the
 * boot number, the global head, the names and the requests awaiting an answer are set; 0 if it is not, -1 if the
 * storage could not be read. Its size, at its end, tells its layout: names of NAME_CAP bytes, or of OLD_NAME_CAP (a
 * board flashed with this firmware keeps what it learned). Called at start-up only: g_pending holds no request yet,
 * and is emptied again if the record is refused. */
static long read_record(uint32_t len) {
    uint32_t fixed[RECORD_FIXED], tail[2] = {0, 0};
    if (board_state_read(len - 8u, (uint8_t *)tail, 8) != 8) return -1;
    const uint32_t cap = tail[0] == RECORD_BYTES                    ? NAME_CAP
                         : tail[0] == RECORD_BYTES_FOR(OLD_NAME_CAP) ? OLD_NAME_CAP
                                                                     : 0;
    if (!cap || tail[0] >= len) return 0;
    const uint32_t at = len - tail[0], head = RECORD_HEAD_FOR(cap);
    int ok = board_state_read(at, g_record, head) == head;
    int readable = ok;
    uint32_t crc = tinycl_crc32(g_record, head);
    memcpy(fixed, g_record, sizeof fixed);
    for (uint32_t i = 0; i < RING && ok; i++) {
        pending_t *q = &g_pending[i];
        const uint32_t off = at + head + i * RECORD_SLOT;
        uint32_t ids[2] = {0, 0};
        ok = board_state_read(off, (uint8_t *)ids, 8) == 8 &&
             board_state_read(off + 8u, (uint8_t *)slot_data(q), PENDING_DATA) == PENDING_DATA;
        readable = ok;
        q->boot = ids[0];
        q->sample_id = ids[1];
        crc = tinycl_crc32_update(tinycl_crc32_update(crc, (const uint8_t *)ids, 8), slot_data(q), PENDING_DATA);
        if (q->sample_id && q->boot > fixed[0]) ok = 0; /* asked by a boot that has not been */
    }
    if (!ok || tail[1] != tinycl_crc32_update(crc, (const uint8_t *)&tail[0], 4) || fixed[1] > 1 ||
        fixed[3] > MAXC || fixed[4] != MAXC || fixed[5] != cap || fixed[6] != RING || fixed[7] != PENDING_DATA) {
        memset(g_pending, 0, sizeof g_pending);
        return readable ? 0 : -1;
    }
    g_boot = fixed[0];
    g_global_applied = (int)fixed[1];
    g_global_version = fixed[2];
    g_n_names = fixed[3];
    for (uint32_t i = 0; i < MAXC; i++) {
        const uint8_t *q = g_record + sizeof fixed + i * (4 + cap);
        memcpy(&g_name_ids[i], q, 4);
        memcpy(g_names[i], q + 4, cap);
        g_names[i][cap - 1] = '\0';
    }
    return (long)tail[0];
}

#if !TINYCL_APP_LATENT
static uint8_t g_blob[TINYCL_NDC_STATE_MAX_BYTES];

static uint32_t learned(void) { return g_ndc.cwr.n_seen; }

static int write_learner(size_t *bytes) {
    const int rc = tinycl_ndc_save(&g_ndc, g_blob, sizeof g_blob, bytes);
    return rc ? rc : board_state_write(g_blob, (uint32_t)*bytes) ? TINYCL_ESPACE : TINYCL_OK;
}

static int read_learner(size_t len) {
    if (len > sizeof g_blob || board_state_read(0, g_blob, (uint32_t)len) != len) return TINYCL_ESTATE;
    return tinycl_ndc_load(&g_ndc, g_blob, len);
}

static void fresh_learner(void) { /* accepted at start-up already */
    (void)tinycl_ndc_init(&g_ndc, TINYCL_INIT_LR, TINYCL_INIT_BATCH_SIZE, 0);
    (void)tinycl_ndc_init_from_labelled(&g_ndc, tinycl_init_x, tinycl_init_y, tinycl_init_n);
}
#else
static uint8_t g_io[512]; /* the state blob streams through this (it is ~0.6 MB: no second copy fits in RAM) */

static int state_sink(void *ctx, const uint8_t *data, size_t n) {
    (void)ctx;
    return board_state_write(data, (uint32_t)n);
}

static size_t state_source(void *ctx, size_t offset, uint8_t *dst, size_t n) {
    (void)ctx;
    return board_state_read((uint32_t)offset, dst, (uint32_t)n);
}

/* An empty latent head with the generated hyper-parameters, its replay grid the CNN's cut grid. */
static int fresh_latent(void) {
    tinycl_latent_params_t prm;
    tinycl_latent_default_params(&prm);
    const int rc = tinycl_latent_init(&g_lat, &prm);
    return rc ? rc : tinycl_latent_use_grid(&g_lat, TINYCL_CUT_SCALE, TINYCL_CUT_ZP);
}

static uint32_t learned(void) { return g_lat.n_seen; }

static int write_learner(size_t *bytes) {
    *bytes = tinycl_latent_state_size(&g_lat);
    return tinycl_latent_save_to(&g_lat, state_sink, NULL, g_io, sizeof g_io);
}

/* The saved latent head, if the core accepts it and it codes latents on this CNN's cut grid. */
static int read_learner(size_t len) {
    const int rc = tinycl_latent_load_from(&g_lat, state_source, NULL, len, g_io, sizeof g_io);
    if (rc == TINYCL_OK && (g_lat.n_grids != 1 || g_lat.q_scale[0] != TINYCL_CUT_SCALE || g_lat.q_zp[0] != TINYCL_CUT_ZP))
        return OTHER_GRID; /* another model's codes */
    return rc;
}

static void fresh_learner(void) { (void)fresh_latent(); /* accepted at start-up already */ }

/* The answer ``rid`` completed a training round that diverged (TINYCL_EDIVERGED: a learning rate too high for these
 * features), leaving the head's weights finite but far off. latent.py undoes such a round from a copy of its
 * weights; the board has no RAM for that copy, but it saved the head after its last round: take that back. Without
 * a saved head (a board without storage) the head keeps its finite weights. One line either way. */
static void undo_diverged_round(const char *rid) {
    const long len = board_state_open_read();
    const int rc = len > (long)RECORD_BYTES ? read_learner((size_t)len - RECORD_BYTES) : TINYCL_ESTATE;
    if (len >= 0) board_state_close();
    if (rc == TINYCL_OK)
        logf_("LOG label answer '%.40s': training diverged (learning rate too high): the round is dropped, the head "
              "saved after the last round taken back (%lu samples)", rid, (unsigned long)learned());
    else if (rc == OTHER_GRID) { /* read_learner loaded it: as restore_state, another model's head is never kept */
        fresh_learner();
        logf_("LOG label answer '%.40s': training diverged (learning rate too high): the round is dropped; the saved "
              "head codes another model's cut: the learner starts afresh", rid);
    } else
        logf_("LOG label answer '%.40s': training diverged (learning rate too high): the round is dropped; no saved "
              "head to take back (%s): the head keeps its last finite weights", rid,
              len < 0 ? "none saved" : tinycl_error_name(rc));
}
#endif

static void save_failed(const char *why) {
    g_save_failures++;
    g_save_error = why;
}

static void save_state(void) {
    const uint32_t t0 = board_millis();
    size_t bytes = 0;
    const int opened = board_state_open_write();
    if (opened == BOARD_NO_STORAGE) {
        if (!g_no_storage) board_log("LOG state: this board has no storage: what it learns is lost at a reset");
        g_no_storage = 1;
        return;
    }
    if (opened != 0) {
        board_log("LOG state: the storage cannot be written: not saved");
        save_failed("the storage cannot be written");
        return;
    }
    int rc = write_learner(&bytes);
    if (rc == TINYCL_OK && write_record() != 0) rc = TINYCL_ESPACE;
    if (rc != TINYCL_OK) {
        (void)board_state_commit(0);
        logf_("LOG state: writing failed (%s): not saved, the storage keeps what it held",
              rc == TINYCL_ESPACE ? "the storage did not take every byte" : tinycl_error_name(rc));
        save_failed(rc == TINYCL_ESPACE ? "the storage did not take every byte" : "the learner could not be written");
        return;
    }
    if (board_state_commit(1) != 0) {
        board_log("LOG state: the storage refused to commit the written state: not saved, it keeps what it held");
        save_failed("the storage refused to commit it");
        return;
    }
    g_saved_at = t0;
    g_saved_seen = learned();
    g_saves++;
    g_saved_frame = g_frame;
    g_save_error = NULL;
    logf_("LOG state saved: %lu samples, %lu bytes, %lu ms", (unsigned long)learned(),
          (unsigned long)(bytes + RECORD_BYTES), (unsigned long)(board_millis() - t0));
}

/* The saved state, if any and if its record and the core accept it; else the learner as it starts (one line). The
 * boot number of a whole record is kept even when its learner's blob is refused: request ids stay unique. */
static void restore_state(void) {
    const long len = board_state_open_read();
    if (len < 0) {
        board_log("LOG state: none saved: the learner starts afresh");
        return;
    }
    const char *why = NULL;
    int rc = TINYCL_OK;
    long record = 0;
    if ((size_t)len <= RECORD_BYTES_FOR(OLD_NAME_CAP))
        why = "shorter than the app's record";
    else if ((record = read_record((uint32_t)len)) < 0)
        why = "the storage could not be read";
    else if (!record)
        why = "the app's record at its end is damaged (size, CRC or layout)";
    else if ((rc = read_learner((size_t)(len - record))) == OTHER_GRID)
        why = "the latent head codes another model's cut";
    else if (rc != TINYCL_OK)
        why = tinycl_error_name(rc);
    board_state_close();
    if (why) {
        fresh_learner();
        g_global_applied = 0;
        g_global_version = g_n_names = 0;
        logf_("LOG state: the saved state (%ld bytes) was refused: %s: the learner starts afresh", len, why);
        if ((size_t)len > RECORD_BYTES_FOR(OLD_NAME_CAP) && record >= 0 && board_state_set_aside() == 0) /* kept */
            board_log("LOG state: the refused state is kept aside, not overwritten");
        return;
    }
    g_restored = 1;
    g_saved_seen = learned();
    uint32_t asked = 0;
    for (uint32_t i = 0; i < RING; i++) asked += g_pending[i].sample_id != 0;
    logf_("LOG state restored: %lu samples, %lu classes, %ld bytes, boot %lu, label requests awaiting an answer: %lu",
          (unsigned long)learned(), (unsigned long)n_known(), len, (unsigned long)g_boot, (unsigned long)asked);
}

/* ------------------------------------------------------------------------------ the learner's classes */
#if TINYCL_APP_LATENT
static uint32_t n_known(void) { return g_lat.n_classes; }
/* Its softmax says nothing yet: no training round (the classifier's rows are zero, every class equally likely), or one
 * class (a one-class softmax is 1): ask whatever the confidence. */
static int latent_untrained(void) { return g_lat.n_batches == 0 || g_lat.n_classes < 2; }
static int32_t known_class(uint32_t r) { return g_lat.classes[r]; }
static uint32_t known_count(uint32_t r) { return g_lat.class_seen[r]; }
#else
static uint32_t n_known(void) { return g_ndc.cwr.n_classes; }
static int32_t known_class(uint32_t r) { return g_ndc.cwr.classes[r]; }
static uint32_t known_count(uint32_t r) { return g_ndc.cwr.past[r] + g_ndc.cwr.cur[r]; }
#endif

static int is_known(int32_t id) {
    for (uint32_t r = 0; r < n_known(); r++)
        if (known_class(r) == id) return 1;
    return 0;
}

/* ------------------------------------------------------------------------------ publishing */
static int publish(rcl_publisher_t *pub, const void *msg, uint32_t *counter, const char *topic) {
    if (g_link != CONNECTED) return 0;
    const rcl_ret_t rc = rcl_publish(pub, msg, NULL);
    if (rc == RCL_RET_OK) {
        (*counter)++;
        return 1;
    }
    g_failed++;
    logf_("LOG publish on %s failed (rcl %ld): the agent is checked", topic, (long)rc);
    rcl_reset_error();
    if (rmw_uros_ping_agent(TINYCL_PING_TIMEOUT_MS, TINYCL_PING_ATTEMPTS) != RMW_RET_OK) g_link = LOST;
    return 0;
}

/* The learner's classes, their names and the samples each holds, into the head's list (m_head.classes). */
static void list_classes(void) {
    char num[12];
    m_head.classes.size = n_known();
    for (uint32_t r = 0; r < n_known(); r++) {
        s_head_classes[r].id = (uint32_t)known_class(r);
        s_head_classes[r].sample_count = known_count(r);
        set_str(&s_head_classes[r].name, s_head_names[r], NAME_CAP, class_name(known_class(r), num, sizeof num));
    }
}

/* The head (the TinyNDC app: the latent head has no Head message, see the top of this file), then its classes on
 * `classes`, as the labeler lists its own: a label app lists them and puts their names and counts on the buttons of
 * the board's questions. */
static void publish_head(void) {
    list_classes();
    stamp_now(&m_head.header.stamp);
    m_head.version = ++g_head_version;
#if !TINYCL_APP_LATENT
    const tinycl_cwr_t *h = &g_ndc.cwr;
    m_head.n_seen = h->n_seen;
    for (uint32_t r = 0; r < h->n_classes; r++) {
        memcpy(&s_head_w[r * F], h->cw[r], sizeof h->cw[r]);
        s_head_b[r] = 0.0f; /* CWR* has no bias */
    }
    m_head.weights.size = h->n_classes * F;
    m_head.bias.size = h->n_classes;
    m_head.state.size = 0;
    publish(&pub_head, &m_head, &g_sent_head, "head");
#endif
    if (n_pubs <= CLASSES_PUB) return;
    m_classes.header.stamp = m_head.header.stamp;
    m_classes.classes = m_head.classes;
    publish(&pub_classes, &m_classes, &g_sent_classes, "classes");
}

static void ask_label(uint32_t sample_id, const tinycl_step_t *st) {
    pending_t *p = &g_pending[0]; /* a free slot, else the oldest unanswered request is forgotten */
    for (uint32_t i = 0; i < RING && p->sample_id; i++) {
        pending_t *q = &g_pending[i];
        if (!q->sample_id || q->boot < p->boot || (q->boot == p->boot && q->sample_id < p->sample_id)) p = q;
    }
    p->boot = g_boot;
    p->sample_id = sample_id;
#if TINYCL_APP_LATENT
    memcpy(p->cut, g_cut, sizeof g_cut);
#else
    memcpy(p->x, g_x, sizeof g_x);
#endif
    snprintf(s_req_id, ID_CAP, "%s-%lu.%lu", TINYCL_DEVICE, (unsigned long)g_boot, (unsigned long)sample_id);
    m_req.request_id.size = strlen(s_req_id);
    m_req.header.stamp = m_feat.header.stamp;
    memcpy(s_req_pixels, g_pixels, PIX);
    m_req.picture.header.stamp = m_feat.header.stamp;
    m_req.picture.data.size = PIX;
    m_req.features = m_feat;
    m_req.features.data.data = s_req_feat;
    memcpy(s_req_feat, g_x, sizeof g_x);
    /* candidates: the best guess first (the clusterer's, or the latent head's prediction), then the other known classes */
    const int32_t guess = TINYCL_APP_LATENT ? st->prediction : st->pseudo_label;
    char num[12];
    uint32_t n = 0;
    if (guess >= 0) {
        s_req_cand[n].id = (uint32_t)guess;
        set_str(&s_req_cand[n].name, s_head_names[n], NAME_CAP, class_name(guess, num, sizeof num));
        s_req_cand[n++].sample_count = 0;
    }
    for (uint32_t r = 0; r < n_known() && n < MAXC; r++) {
        if (known_class(r) == guess) continue;
        s_req_cand[n].id = (uint32_t)known_class(r);
        s_req_cand[n].sample_count = known_count(r);
        set_str(&s_req_cand[n].name, s_head_names[n], NAME_CAP, class_name(known_class(r), num, sizeof num));
        n++;
    }
    m_req.candidates.size = n;
    if (publish(&pub_req, &m_req, &g_sent_req, "label_request")) logf_("A %lu", (unsigned long)sample_id);
}

/* ------------------------------------------------------------------------------ health on /diagnostics */
/* The board's status beside every other node's (`ros2 topic echo /diagnostics`, rqt_robot_monitor, the aggregator):
 * a DiagnosticArray with one DiagnosticStatus, as tinycl_nodes/nodes/diagnostics.py builds it for the Python nodes.
 * name: the node's fully qualified name; hardware_id: board_id(); values with the Python nodes' keys where the meaning
 * is the same (uptime_s, messages_received, bad_input_dropped, samples_learned, classes_known, head_version,
 * questions_pending, checkpoint_age_s), then the board's own counters. Level ERROR while the state cannot be saved (the
 * last save failed: what was learned since is not in the storage), WARN while the period since the last report
 * dropped bad input, had a publish or a save fail, or lost received messages in the middleware; the message says why
 * in a few words, "OK" otherwise. Static buffers, every string bounded (a longer text is cut, never overflows). */
static uint32_t g_diag_due;   /* board_millis() of the last report tried (the next is due a period later) */
static uint32_t g_diag_since; /* board_millis() of the last report published: the period its findings cover */
static uint32_t g_diag_refused, g_diag_failed, g_diag_lost, g_diag_save_failures; /* the counters then */
static uint32_t g_connected_at; /* board_millis() when the entities were last created */

static void diag_value(const char *key, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void diag_value(const char *key, const char *fmt, ...) {
    const size_t i = s_diag.values.size;
    if (i == DIAG_VALUES) return; /* more values than buffers: the rest is left out, nothing written past them */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s_diag_vals[i], DIAG_VALUE_CAP, fmt, ap);
    va_end(ap);
    set_str(&s_diag_kv[i].key, s_diag_keys[i], DIAG_KEY_CAP, key);
    set_str(&s_diag_kv[i].value, s_diag_vals[i], DIAG_VALUE_CAP, s_diag_vals[i]);
    s_diag.values.size = i + 1;
}

/* A finding: the level is its worst one, the message its texts joined by "; " (the worst is added first). */
static void diag_finding(uint8_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void diag_finding(uint8_t level, const char *fmt, ...) {
    size_t n = strlen(s_diag_msg);
    if (level > s_diag.level) s_diag.level = level;
    if (n && n + 3 >= DIAG_MSG_CAP) return; /* no room for "; " and a word: the level says it, the text is full */
    if (n) {
        memcpy(s_diag_msg + n, "; ", 3);
        n += 2;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s_diag_msg + n, DIAG_MSG_CAP - n, fmt, ap);
    va_end(ap);
}

static void publish_diagnostics(void) {
    const uint32_t now = board_millis(); /* not the loop's: a frame, a save or a reconnection may have come since */
    const unsigned long period_s = (now - g_diag_since + 999u) / 1000u; /* "in the last 2 s", never "0 s" */
    uint32_t pending = 0;
    for (uint32_t i = 0; i < RING; i++) pending += g_pending[i].sample_id != 0;
    g_diag_due = now;
    s_diag.level = diagnostic_msgs__msg__DiagnosticStatus__OK;
    s_diag_msg[0] = '\0';
    if (g_save_error)
        diag_finding(diagnostic_msgs__msg__DiagnosticStatus__ERROR, "state cannot be saved: %s", g_save_error);
    else if (g_no_storage)
        diag_finding(diagnostic_msgs__msg__DiagnosticStatus__WARN, "no storage on this board: what it learns is lost "
                     "at a reset");
    else if (g_save_failures != g_diag_save_failures)
        diag_finding(diagnostic_msgs__msg__DiagnosticStatus__WARN, "%lu state save(s) failed in the last %lu s",
                     (unsigned long)(g_save_failures - g_diag_save_failures), period_s);
    if (g_refused != g_diag_refused)
        diag_finding(diagnostic_msgs__msg__DiagnosticStatus__WARN, "%lu bad input(s) dropped in the last %lu s",
                     (unsigned long)(g_refused - g_diag_refused), period_s);
    if (g_failed != g_diag_failed)
        diag_finding(diagnostic_msgs__msg__DiagnosticStatus__WARN, "%lu publish(es) failed in the last %lu s",
                     (unsigned long)(g_failed - g_diag_failed), period_s);
#if TINYCL_RMW_DROP_COUNT
    if (g_lost != g_diag_lost)
        diag_finding(diagnostic_msgs__msg__DiagnosticStatus__WARN, "%lu received message(s) lost by the middleware "
                     "in the last %lu s", (unsigned long)(g_lost - g_diag_lost), period_s);
#endif
    set_str(&s_diag.message, s_diag_msg, DIAG_MSG_CAP, s_diag_msg[0] ? s_diag_msg : "OK");
    s_diag.values.size = 0;
    diag_value("uptime_s", "%lu", (unsigned long)(g_uptime_ms / 1000u));
    diag_value("messages_received", "%lu", (unsigned long)g_received);
    diag_value("bad_input_dropped", "%lu", (unsigned long)g_refused);
    diag_value("samples_learned", "%lu", (unsigned long)learned());
    diag_value("classes_known", "%lu", (unsigned long)n_known());
#if !TINYCL_APP_LATENT
    diag_value("head_version", "%lu", (unsigned long)g_head_version); /* the latent app publishes no head */
#endif
    diag_value("questions_pending", "%lu", (unsigned long)pending);
    diag_value("frames_processed", "%lu", (unsigned long)g_frame);
    diag_value("frames_not_learned", "%lu", (unsigned long)g_not_learned);
    diag_value("answers_applied", "%lu", (unsigned long)g_answers);
    diag_value("global_heads_applied", "%lu", (unsigned long)g_globals);
    diag_value("messages_published", "%lu",
               (unsigned long)(g_sent_feat + g_sent_pred + g_sent_head + g_sent_req + g_sent_status + g_sent_classes +
                               g_sent_diag));
    diag_value("publish_failures", "%lu", (unsigned long)g_failed);
#if TINYCL_RMW_DROP_COUNT
    diag_value("received_messages_lost", "%lu", (unsigned long)g_lost); /* counted only where the link wraps rmw */
#endif
    diag_value("agent_reconnects", "%lu", (unsigned long)g_reconnects);
    diag_value("boot", "%lu", (unsigned long)g_boot);
    diag_value("state_saves", "%lu", (unsigned long)g_saves);
    diag_value("state_save_failures", "%lu", (unsigned long)g_save_failures);
    if (g_saves) {
        diag_value("last_checkpoint_frame", "%lu", (unsigned long)g_saved_frame);
        diag_value("checkpoint_age_s", "%lu", (unsigned long)((now - g_saved_at) / 1000u));
    } else {
        diag_value("last_checkpoint_frame", "none yet");
    }
    stamp_now(&m_diag.header.stamp);
    /* The period's findings are reported until a report reached the graph: one that failed leaves them to the next.
     * So are those of the reports just after a (re)connection: the graph has not discovered the agent's new writer yet
     * (volatile: such a report reaches no one, though the agent confirms it; 3-4 s after a reconnection in demo_board's
     * runs), and the first report after an outage is the one that says what failed in it. */
    const uint32_t refused = g_refused, failed = g_failed, lost = g_lost, save_failures = g_save_failures;
    if (!publish(&pub_diag, &m_diag, &g_sent_diag, "diagnostics") || now - g_connected_at < TINYCL_DIAG_HOLD_MS) return;
    g_diag_since = now;
    g_diag_refused = refused;
    g_diag_failed = failed;
    g_diag_lost = lost;
    g_diag_save_failures = save_failures;
}

/* ------------------------------------------------------------------------------ received messages */
/* `s` as a JSON string: its quotes and backslashes escaped (a name the board keeps holds no control character). */
static void json_string(char *out, size_t cap, const char *s) {
    size_t n = 0;
    out[n++] = '"';
    for (; *s && n + 3 < cap; s++) {
        if (*s == '"' || *s == '\\') out[n++] = '\\';
        out[n++] = *s;
    }
    out[n++] = '"';
    out[n] = '\0';
}

/* The board's verdict on an answer to one of its questions, on label_status as the labeler says it (labeler.py
 * _verdict: request_id, status "learned" | "refused" | "skipped", class_id, class_name, message; new_class with
 * "learned"): a label app shows a person's answer as learned, or refused and why, only when it comes. */
static void say_verdict(const char *rid, const char *status, int32_t class_id, const char *name, const char *message,
                        int new_class) {
    static char rid_json[2 * ID_CAP + 3], name_json[2 * NAME_CAP + 3], message_json[2 * REASON_CAP + 3];
    if (n_pubs <= STATUS_PUB) return;
    json_string(rid_json, sizeof rid_json, rid); /* a rename's id is any peer's: quotes in it stay inside the string */
    json_string(name_json, sizeof name_json, name);
    json_string(message_json, sizeof message_json, message);
    const int n = snprintf(s_status, sizeof s_status,
                           "{\"request_id\": %s, \"status\": \"%s\", \"class_id\": %ld, \"class_name\": %s, "
                           "\"message\": %s%s}", rid_json, status, (long)class_id, name_json, message_json,
                           new_class < 0 ? "" : new_class ? ", \"new_class\": true" : ", \"new_class\": false");
    m_status.data.data = s_status;
    m_status.data.size = (size_t)n < sizeof s_status ? (size_t)n : sizeof s_status - 1;
    m_status.data.capacity = sizeof s_status;
    publish(&pub_status, &m_status, &g_sent_status, "label_status");
}

/* A label answer or a rename (`what`) dropped: one line, counted as bad input, and the verdict to a label app if it
 * is one the board owes a verdict (`ours`: an answer to one of its questions, any rename). */
static void refuse(const char *what, const char *rid, int ours, int32_t class_id, const char *why) {
    g_refused++;
    logf_("LOG %s '%.40s': %s: dropped", what, rid, why);
    if (ours) say_verdict(rid, "refused", class_id, "", why, -1);
}

/* 1 if the request id of a label answer or rename (`what`) was too long for its buffer: then it is one line, counted
 * as bad input, and dropped (no verdict: its id is unknown). */
static int request_id_too_long(const char *what, const rosidl_runtime_c__String *id) {
    if (!rx_too_long(id)) return 0;
    g_refused++;
    logf_("LOG %s: its request id is longer than %u bytes: dropped", what, (unsigned)(ID_CAP - 1));
    return 1;
}

/* 1 if rid is one of the board's question ids, <device>-<boot>.<sample id> (this boot's or an earlier one's), with
 * its parts; else 0. */
static int our_question(const char *rid, unsigned long *boot, unsigned long *sid) {
    const size_t plen = strlen(TINYCL_DEVICE);
    if (strncmp(rid, TINYCL_DEVICE "-", plen + 1) != 0) return 0;
    char *dot = NULL, *end = NULL;
    *boot = strtoul(rid + plen + 1, &dot, 10);
    *sid = *dot == '.' ? strtoul(dot + 1, &end, 10) : 0;
    return *sid && end && *end == '\0';
}

/* The id of a person's new class called name: the class that has the name, else the next id (the labeler's
 * class_for_name; tinycl_next_class_id: one past the highest, as max + 1 overflowed after class 2^31 − 1). */
static int32_t class_for_name(const char *name) {
    static int32_t known[2 * MAXC];
    uint32_t n = 0;
    for (uint32_t r = 0; r < n_known(); r++) known[n++] = known_class(r);
    for (uint32_t i = 0; i < g_n_names; i++) known[n++] = g_name_ids[i];
    int32_t id = tinycl_next_class_id(known, n);
    for (uint32_t i = 0; i < g_n_names; i++)
        if (strcmp(g_names[i], name) == 0) id = g_name_ids[i]; /* named before: the same class */
    return id;
}

static void on_answer(const void *msg) {
    const tinycl_nodes__msg__LabelAnswer *a = msg;
    static char why[REASON_CAP];
    g_received++;
    if (request_id_too_long("label answer", &a->request_id)) return;
    const char *rid = a->request_id.data;
    pending_t *p = NULL;
    unsigned long boot = 0, sid = 0;
    const int ours = our_question(rid, &boot, &sid);
    for (uint32_t i = 0; i < RING && ours; i++)
        if (g_pending[i].sample_id == sid && g_pending[i].boot == boot) p = &g_pending[i];
    const int new_class = a->class_id == tinycl_nodes__msg__LabelAnswer__NEW_CLASS;
    const char *bad = new_class ? name_problem(&a->new_class_name) : NULL;
    if (bad) { /* whatever request it answers: the board would keep the class under a wrong name, or none */
        snprintf(why, sizeof why, "the new class's name %s", bad);
        refuse("label answer", rid, ours, -1, why);
        return;
    }
    if (!p && ours && boot != g_boot) {
        snprintf(why, sizeof why, "asked before the board restarted (now boot %lu), not pending",
                 (unsigned long)g_boot);
        refuse("label answer", rid, ours, -1, why);
        return;
    }
    if (!p) {
        g_refused++;
        logf_("LOG label answer for unknown request '%.40s': dropped", rid);
        if (ours) say_verdict(rid, "refused", -1, "", "the board is not asking this question (any more)", -1);
        return;
    }
    int32_t label = a->class_id;
    if (label == TINYCL_NO_CLASS) { /* Skip / Not sure on a phone: the question is dropped, nothing is learned */
        logf_("LOG label answer '%.40s': skipped: the question is dropped, nothing learned", rid);
        p->sample_id = 0;
        save_state(); /* the record holds the questions awaiting an answer */
        say_verdict(rid, "skipped", -1, "", "", -1);
        return;
    }
    const char *new_name = NULL; /* kept once learned: a refused answer left its name in the saved record */
    if (new_class) {
        new_name = a->new_class_name.data;
        if (!new_name[0]) {
            refuse("label answer", rid, ours, -1, "a new class without a name");
            return;
        }
        label = class_for_name(new_name);
    } else if (label < 0) {
        snprintf(why, sizeof why, "class id %ld is not a class", (long)label);
        refuse("label answer", rid, ours, -1, why);
        return;
    }
    const int was_known = is_known(label);
#if TINYCL_APP_LATENT
    const uint32_t rounds = g_lat.n_batches;
    const int rc = tinycl_latent_learn_q(&g_lat, p->cut, label);
    if (rc == TINYCL_OK && g_lat.n_batches != rounds) save_state(); /* a training round: keep what it learned */
    if (rc == TINYCL_EDIVERGED) {
        g_refused++;
        undo_diverged_round(rid);
        say_verdict(rid, "refused", -1, "", "training diverged: the round is dropped", -1);
        return;
    }
#else
    const uint32_t tag = g_tags + 1u; /* a correction names the answer by its question: kept in g_answered */
    const int rc = tinycl_undo_learn_label(&g_undo, &g_ndc, p->x, label, tag);
    if (rc == TINYCL_OK) {
        answered_t *slot = &g_answered[0]; /* a free slot, else the oldest answer */
        for (uint32_t i = 0; i < ANSWERED && slot->tag; i++)
            if (!g_answered[i].tag || g_answered[i].tag < slot->tag) slot = &g_answered[i];
        *slot = (answered_t){p->boot, p->sample_id, tag};
        g_tags = tag;
    }
#endif
    if (rc != TINYCL_OK) {
        g_refused++;
        logf_("LOG label answer '%.40s' (class %ld) refused by the core (%s): dropped", rid, (long)label,
              tinycl_error_name(rc));
        snprintf(why, sizeof why, "refused by the board's learner (%s)", tinycl_error_name(rc));
        say_verdict(rid, "refused", -1, "", why, -1);
        return;
    }
    if (new_name) remember_name(label, new_name);
    logf_("EV %lu answer %lu %ld", (unsigned long)g_frame, (unsigned long)p->sample_id, (long)label);
    p->sample_id = 0;
    g_answers++;
#if !TINYCL_APP_LATENT
    save_state(); /* a person's answer is never lost */
#endif
    char num[12];
    say_verdict(rid, "learned", label, class_name(label, num, sizeof num), "", !was_known);
    publish_head();
}

/* A person renames one of the board's classes (rename_class: a LabelAnswer with the rename's own request id, the
 * class and its new name), as the labeler takes it (labeler.py on_rename): the name kept and saved, the head and
 * the class list published again, and the verdict ("renamed", or "refused" and why) on label_status under that id. */
static void on_rename(const void *msg) {
    const tinycl_nodes__msg__LabelAnswer *a = msg;
    static char why[REASON_CAP];
    char num[12], other[12];
    g_received++;
    if (request_id_too_long("rename", &a->request_id)) return;
    const char *rid = a->request_id.data, *name = a->new_class_name.data, *bad = name_problem(&a->new_class_name);
    const int32_t cid = a->class_id;
    why[0] = '\0';
    if (!is_known(cid))
        snprintf(why, sizeof why, "cannot rename class %ld: no such class", (long)cid);
    else if (bad || !name[0])
        snprintf(why, sizeof why, "cannot rename class %ld: the name %s", (long)cid, bad ? bad : "is empty");
    for (uint32_t r = 0; r < n_known() && !why[0]; r++) /* ASCII case aside, as the labeler compares names */
        if (known_class(r) != cid && strcasecmp(class_name(known_class(r), other, sizeof other), name) == 0)
            snprintf(why, sizeof why, "cannot rename class %ld to '%.40s': class %ld has that name", (long)cid, name,
                     (long)known_class(r));
    if (why[0]) {
        refuse("rename", rid, 1, cid, why);
        return;
    }
    remember_name(cid, name);
    save_state(); /* a person's name for the class: kept across a reset */
    logf_("LOG class %ld renamed (%.40s)", (long)cid, rid);
    say_verdict(rid, "renamed", cid, class_name(cid, num, sizeof num), "", -1);
    publish_head();
}

#if !TINYCL_APP_LATENT
/* A person changes or withdraws an answer (label_correction: a LabelAnswer with the answered question's id, the new
 * class or a new class's name, or TINYCL_NO_CLASS to withdraw it), as the labeler takes it (labeler.py
 * on_correction): the system replayed without it or with its new class (tinycl_undo_relabel), saved, published, and
 * the verdict on label_status ("learned" with the class, or "withdrawn"). An answer of an earlier boot, or before a
 * global head, or more than TINYCL_UNDO_MAX samples back, is no longer kept: refused, nothing changed. */
static void on_correction(const void *msg) {
    const tinycl_nodes__msg__LabelAnswer *a = msg;
    static char why[REASON_CAP];
    char num[12];
    g_received++;
    if (request_id_too_long("label correction", &a->request_id)) return;
    const char *rid = a->request_id.data;
    unsigned long boot = 0, sid = 0;
    const int ours = our_question(rid, &boot, &sid);
    answered_t *d = NULL;
    for (uint32_t i = 0; i < ANSWERED && ours; i++)
        if (g_answered[i].tag && g_answered[i].boot == boot && g_answered[i].sample_id == sid) d = &g_answered[i];
    int32_t label = a->class_id;
    const char *bad = label == tinycl_nodes__msg__LabelAnswer__NEW_CLASS ? name_problem(&a->new_class_name) : NULL;
    const char *new_name = label == tinycl_nodes__msg__LabelAnswer__NEW_CLASS ? a->new_class_name.data : NULL;
    why[0] = '\0';
    if (!d)
        snprintf(why, sizeof why, "the board no longer holds this answer: it cannot be changed any more");
    else if (bad || (new_name && !new_name[0]))
        snprintf(why, sizeof why, "the new class's name %s", bad ? bad : "is empty");
    else if (new_name)
        label = class_for_name(new_name);
    else if (label == TINYCL_NO_CLASS)
        label = -1; /* withdrawn: learned as nothing */
    else if (!is_known(label))
        snprintf(why, sizeof why, "unknown class id %ld", (long)label);
    if (why[0]) {
        refuse("label correction", rid, ours, -1, why);
        return;
    }
    const int was_known = label < 0 || is_known(label);
    const int rc = tinycl_undo_relabel(&g_undo, &g_ndc, d->tag, label);
    if (rc != TINYCL_OK) {
        if (rc == TINYCL_EGONE)
            snprintf(why, sizeof why, "the board no longer keeps what it learned from this answer: it cannot be "
                     "changed any more");
        else
            snprintf(why, sizeof why, "refused by the board's learner (%s)", tinycl_error_name(rc));
        refuse("label correction", rid, ours, -1, why);
        return;
    }
    if (new_name) remember_name(label, new_name);
    if (label < 0) d->tag = 0; /* withdrawn: nothing left to change */
    logf_("EV %lu correct %lu %ld", (unsigned long)g_frame, sid, (long)label);
    save_state(); /* a person's change is never lost */
    if (label < 0)
        say_verdict(rid, "withdrawn", -1, "", "", -1);
    else
        say_verdict(rid, "learned", label, class_name(label, num, sizeof num), "", !was_known);
    publish_head();
}
#endif

/* What is wrong with a global head's class names (name_problem), NULL if nothing. */
static const char *class_names_problem(const tinycl_nodes__msg__Head *h) {
    static char line[80];
    for (size_t r = 0; r < h->classes.size; r++) {
        const char *why = name_problem(&h->classes.data[r].name);
        if (why) {
            snprintf(line, sizeof line, "class %lu's name %s", (unsigned long)h->classes.data[r].id, why);
            return line;
        }
    }
    return NULL;
}

static void on_global(const void *msg) {
    const tinycl_nodes__msg__Head *h = msg;
    static int32_t ids[MAXC];
    static uint32_t counts[MAXC];
    uint8_t sha[32];
    const char *why = NULL;
    const size_t n = h->classes.size;
    const char *hash = h->extractor_hash.data ? h->extractor_hash.data : "";
    g_received++;
    if (g_global_applied && h->version <= g_global_version) return; /* already applied (re-sent) */
    if (TINYCL_APP_LATENT) { /* by design, not bad input: said once, and no WARN at each of the fleet's rounds */
        static int said;
        if (!said) logf_("LOG global head v%lu: the latent head does not load a linear global head: not applied, "
                         "and no later one (said once)", (unsigned long)h->version);
        said = 1;
        return;
    }
    if (strcmp(hash, TINYCL_MODEL_SHA256) != 0) why = "made on another extractor";
    else if (h->n_features != F) why = "another feature size";
    else if (n == 0) why = "no classes";
    else if (n > MAXC) why = "more classes than the board holds";
    else if (h->weights.size != n * F || h->bias.size != n) why = "weights or bias of the wrong size";
    else if (strcmp(h->kind.data ? h->kind.data : "", TINYCL_HEAD_KIND) != 0) why = "another head kind";
    else why = class_names_problem(h);
    if (!why) {
        for (size_t r = 0; r < n; r++) {
            if (h->classes.data[r].id > INT32_MAX) { why = "a class id out of range"; break; }
            ids[r] = (int32_t)h->classes.data[r].id;
            counts[r] = h->classes.data[r].sample_count;
        }
    }
    if (!why) {
        tinycl_model_sha256_bytes(sha);
        if (tinycl_cwr_load_linear(&g_ndc.cwr, (uint32_t)n, ids, counts, h->weights.data, sha) != TINYCL_OK)
            why = "refused by the core (repeated id or NaN)";
    }
    if (why) {
        g_refused++;
        logf_("LOG global head v%lu (%u classes, %lu features, extractor %.12s): %s: dropped",
              (unsigned long)h->version, (unsigned)n, (unsigned long)h->n_features, hash, why);
        return;
    }
    for (size_t r = 0; r < n; r++) remember_name(ids[r], h->classes.data[r].name.data ? h->classes.data[r].name.data : "");
    logf_("EV %lu global %lu", (unsigned long)g_frame, (unsigned long)h->version);
    g_global_version = h->version;
    g_global_applied = 1;
    g_globals++;
#if !TINYCL_APP_LATENT
    (void)tinycl_undo_init(&g_undo, &g_ndc); /* the answers before it can no longer be changed */
    save_state(); /* with the record saying it was applied: a reset now must not apply it again */
#endif
    publish_head();
}

/* ------------------------------------------------------------------------------ entities */
static rmw_qos_profile_t latched_qos(void) {
    rmw_qos_profile_t q = rmw_qos_profile_default;
    q.history = RMW_QOS_POLICY_HISTORY_KEEP_LAST;
    q.depth = 1;
    q.reliability = RMW_QOS_POLICY_RELIABILITY_RELIABLE;
    q.durability = RMW_QOS_POLICY_DURABILITY_TRANSIENT_LOCAL;
    return q;
}

/* A subscription's QoS with a lifespan of 100 years. rmw_microxrcedds stamps each received message with the session's
 * epoch clock and, at each wait and take, discards one older than the lifespan (30 s when unset; the lifespan stays on
 * the board, the agent never sees it). After a failed rmw_uros_sync_session the agent's reply may still come late and
 * step that clock from board time to the Unix epoch: with 30 s, every message received before it and not yet taken (a
 * label answer that arrived while the board waited for a publish to be confirmed) would be dropped without a word.
 * 100 years outlasts that step (until 2070) and cannot overflow stamp + lifespan in int64 ns (until 2170). */
static rmw_qos_profile_t kept(rmw_qos_profile_t q) {
    q.lifespan = (rmw_time_t){100LL * 365 * 24 * 3600, 0};
    return q;
}

/* rcl's error text, when this build keeps one: micro-ROS builds rcutils with RCUTILS_AVOID_DYNAMIC_ALLOCATION,
 * where RCL_SET_ERROR_MSG records nothing and the error string is a 1-byte array (no text, no terminator). */
static const char *rcl_error_text(void) {
#if RCUTILS_ERROR_MESSAGE_MAX_LENGTH > 1
    static rcutils_error_string_t text;
    if (!rcl_error_is_set()) return "no rcl error text"; /* rclc resets it before returning a take's error */
    text = rcl_get_error_string();
    return text.str;
#else
    return "no rcl error text in this build";
#endif
}

#define TRY(call)                                                                 \
    do {                                                                          \
        const rcl_ret_t rc_ = (call);                                             \
        if (rc_ != RCL_RET_OK) {                                                  \
            logf_("LOG %.40s failed (rcl %ld: %.100s)", #call, (long)rc_, rcl_error_text()); \
            rcl_reset_error();                                                    \
            return 0;                                                             \
        }                                                                         \
    } while (0)

/* A board without a whole record (new or erased storage, a reflash that erased it, a damaged record) counts its boots
 * from 1 again, so its request ids (<device>-<boot>.<sample id>) could be an earlier life's: a label app that
 * remembers that life's answers would not show them again ("already answered"), and an answer to that life's request,
 * still open on a phone, could be learned for another image. Once the agent's clock is known (before anything is sent)
 * such a boot is numbered by it instead, in Unix seconds: above any count of boots, and two such starts at least a
 * second apart differ. Saved at once; later boots count on from it. */
static void number_boot_by_clock(void) {
    const int64_t now_s = rmw_uros_epoch_millis() / 1000;
    g_boot_recounted = 0;
    if (now_s <= (int64_t)g_boot || now_s > (int64_t)UINT32_MAX) {
        logf_("LOG no saved boot number and no usable clock from the agent: this boot stays boot %lu",
              (unsigned long)g_boot);
        return;
    }
    g_boot = (uint32_t)now_s;
    logf_("LOG no saved boot number: this boot is numbered %lu, the agent's clock in seconds (its request ids cannot be "
          "an earlier life's)", (unsigned long)g_boot);
    save_state();
}

static int support_ok, node_ok, n_subs, executor_ok;

/* A subscription the board can do without (renames, changes of answers; LabelAnswer), in this order: a libmicroros
 * built for fewer subscriptions refuses it, and the board runs on without it and those after it, with one line that
 * names them (`without`). 1 if created. */
static int optional_subscription(rcl_subscription_t *sub, const char *topic, const char *without,
                                 const rmw_qos_profile_t *qos) {
    const rcl_ret_t rc = rclc_subscription_init(sub, &node, ROSIDL_GET_MSG_TYPE_SUPPORT(tinycl_nodes, msg, LabelAnswer),
                                                topic, qos);
    if (rc == RCL_RET_OK) return 1;
    logf_("LOG no %s: the subscription to %s was refused (rcl %ld: %.100s; a libmicroros built for "
          "RMW_UXRCE_MAX_SUBSCRIPTIONS=%d?)", without, topic, (long)rc, rcl_error_text(), n_subs);
    rcl_reset_error();
    return 0;
}

static int create_entities(void) {
    allocator = rcl_get_default_allocator();
    rcl_init_options_t opts = rcl_get_zero_initialized_init_options();
    TRY(rcl_init_options_init(&opts, allocator));
    TRY(rcl_init_options_set_domain_id(&opts, TINYCL_DOMAIN_ID));
    const rcl_ret_t rc = rclc_support_init_with_options(&support, 0, NULL, &opts, &allocator);
    TRY(rcl_init_options_fini(&opts));
    TRY(rc);
    support_ok = 1;
    /* before any subscription: the sync moves the session's epoch clock from board time to the agent's epoch (see
     * kept() for what that clock does to received messages, and for a reply that comes after this call gave up) */
    if (rmw_uros_sync_session(1000) != RMW_RET_OK) board_log("LOG time sync with the agent failed: stamps are board time");
    else if (g_boot_recounted) number_boot_by_clock();
    TRY(rclc_node_init_default(&node, "tinycl_board", TINYCL_DEVICE "/tinycl", &support));
    node_ok = 1;
    const char *fq_name = rcl_node_get_fully_qualified_name(&node); /* as rcl made it: /<device>/tinycl/tinycl_board */
    set_str(&s_diag.name, s_diag_name, DIAG_NAME_CAP, fq_name ? fq_name : "");
    const rmw_qos_profile_t latched = latched_qos();
    TRY(rclc_publisher_init_default(&pub_feat, &node, ROSIDL_GET_MSG_TYPE_SUPPORT(tinycl_nodes, msg, Features), "features"));
    n_pubs = 1;
    TRY(rclc_publisher_init_default(&pub_pred, &node, ROSIDL_GET_MSG_TYPE_SUPPORT(tinycl_nodes, msg, Prediction), "predictions"));
    n_pubs = 2;
    TRY(rclc_publisher_init_default(&pub_req, &node, ROSIDL_GET_MSG_TYPE_SUPPORT(tinycl_nodes, msg, LabelRequest), "label_request"));
    n_pubs = 3;
    TRY(rclc_publisher_init(&pub_head, &node, ROSIDL_GET_MSG_TYPE_SUPPORT(tinycl_nodes, msg, Head), "head", &latched));
    n_pubs = 4;
    /* Optional, in this order: a libmicroros built for fewer publishers (micro_ros_platformio keeps its built library
     * when the meta changes: `pio run -t clean_microros`) refuses the last ones, and the board runs on without them.
     * /diagnostics is absolute, outside the node's namespace, reliable + volatile depth 10: as ROS's diagnostic_updater
     * and the Python nodes publish it (diagnostic_aggregator and rqt_robot_monitor read /diagnostics). */
    const rmw_qos_profile_t reliable = rmw_qos_profile_default;
    const struct {
        rcl_publisher_t *pub;
        const rosidl_message_type_support_t *type;
        const char *topic, *what;
        const rmw_qos_profile_t *qos;
    } extra[] = {
        {&pub_status, ROSIDL_GET_MSG_TYPE_SUPPORT(std_msgs, msg, String), "label_status", "verdicts", &reliable},
        {&pub_classes, ROSIDL_GET_MSG_TYPE_SUPPORT(tinycl_nodes, msg, ClassList), "classes", "class list", &latched},
        {&pub_diag, ROSIDL_GET_MSG_TYPE_SUPPORT(diagnostic_msgs, msg, DiagnosticArray), "/diagnostics", "health",
         &reliable}};
    for (size_t i = 0; i < sizeof extra / sizeof extra[0]; i++) {
        const rcl_ret_t rc = rclc_publisher_init(extra[i].pub, &node, extra[i].type, extra[i].topic, extra[i].qos);
        if (rc != RCL_RET_OK) {
            logf_("LOG no %s on %s, nor what follows: its publisher was refused (rcl %ld: %.100s; a libmicroros "
                  "built for RMW_UXRCE_MAX_PUBLISHERS=%d?)", extra[i].what, extra[i].topic, (long)rc, rcl_error_text(),
                  n_pubs);
            rcl_reset_error();
            break;
        }
        n_pubs++;
    }
    const rmw_qos_profile_t answers = kept(rmw_qos_profile_default), globals = kept(latched);
    TRY(rclc_subscription_init(&sub_answer, &node, ROSIDL_GET_MSG_TYPE_SUPPORT(tinycl_nodes, msg, LabelAnswer), "label_answer", &answers));
    n_subs = 1;
    TRY(rclc_subscription_init(&sub_global, &node, ROSIDL_GET_MSG_TYPE_SUPPORT(tinycl_nodes, msg, Head), "global_head", &globals));
    n_subs = 2;
    /* the TinyNDC app tries changes of answers after renames: without renames, it is without both */
    if (optional_subscription(&sub_rename, "rename_class",
                              TINYCL_APP_LATENT ? "renames" : "renames, nor changes of answers", &answers))
        n_subs = 3;
#if !TINYCL_APP_LATENT /* the latent head cannot replay (it learns in rounds): a label app then offers no changes */
    if (n_subs == 3 && optional_subscription(&sub_correction, "label_correction", "changes of answers", &answers))
        n_subs = 4;
#endif
    for (int i = 0; i < n_pubs; i++) { /* an agent that vanished costs 250 ms per small publish, not 1 s */
        const int fragmented = g_pubs[i] == &pub_head || g_pubs[i] == &pub_classes; /* names of up to 256 B each */
        if (rmw_uros_set_publisher_session_timeout(rcl_publisher_get_rmw_handle(g_pubs[i]),
                                                   fragmented ? TINYCL_HEAD_TIMEOUT_MS : TINYCL_PUBLISH_TIMEOUT_MS) !=
            RMW_RET_OK) {
            board_log("LOG setting the publish timeout failed");
            return 0;
        }
    }
    executor = rclc_executor_get_zero_initialized_executor();
    TRY(rclc_executor_init(&executor, &support.context, 4, &allocator));
    executor_ok = 1;
    TRY(rclc_executor_add_subscription(&executor, &sub_answer, &m_answer, on_answer, ON_NEW_DATA));
    TRY(rclc_executor_add_subscription(&executor, &sub_global, &m_global, on_global, ON_NEW_DATA));
    if (n_subs >= 3) TRY(rclc_executor_add_subscription(&executor, &sub_rename, &m_rename, on_rename, ON_NEW_DATA));
#if !TINYCL_APP_LATENT
    if (n_subs >= 4)
        TRY(rclc_executor_add_subscription(&executor, &sub_correction, &m_correction, on_correction, ON_NEW_DATA));
#endif
    return 1;
}

static void destroy_entities(void) {
    /* The agent may be gone: do not wait for it to confirm each deletion. The local memory is freed
     * either way; calls that could not reach the agent are counted in one line. */
    int failed = 0;
    if (support_ok &&
        rmw_uros_set_context_entity_destroy_session_timeout(rcl_context_get_rmw_context(&support.context), 0) != RMW_RET_OK)
        failed++;
    for (int i = n_pubs - 1; i >= 0; i--) failed += rcl_publisher_fini(g_pubs[i], &node) != RCL_RET_OK;
#if !TINYCL_APP_LATENT
    if (n_subs >= 4) failed += rcl_subscription_fini(&sub_correction, &node) != RCL_RET_OK;
#endif
    if (n_subs >= 3) failed += rcl_subscription_fini(&sub_rename, &node) != RCL_RET_OK;
    if (n_subs >= 2) failed += rcl_subscription_fini(&sub_global, &node) != RCL_RET_OK;
    if (n_subs >= 1) failed += rcl_subscription_fini(&sub_answer, &node) != RCL_RET_OK;
    if (executor_ok) failed += rclc_executor_fini(&executor) != RCL_RET_OK;
    if (node_ok) failed += rcl_node_fini(&node) != RCL_RET_OK;
    if (support_ok) failed += rclc_support_fini(&support) != RCL_RET_OK;
    if (failed) logf_("LOG entities destroyed, %d calls without the agent's answer", failed);
    support_ok = node_ok = n_pubs = n_subs = executor_ok = 0;
    rcl_reset_error();
}

/* ------------------------------------------------------------------------------ one frame */
#if TINYCL_APP_LATENT
/* The latent head's prediction (−1 before any class) and its softmax confidence; it learns only from answers. */
static int latent_step(tinycl_step_t *st) {
    st->prediction = st->pseudo_label = -1;
    st->confidence = 0.0f;
    if (g_lat.n_classes == 0) return TINYCL_OK;
    const int rc = tinycl_latent_scores_q(&g_lat, g_cut, g_scores);
    if (rc) return rc;
    uint32_t best = 0;
    for (uint32_t c = 1; c < g_lat.n_classes; c++)
        if (g_scores[c] > g_scores[best]) best = c; /* the first maximum, as tinycl_latent_predict */
    float sum = 0.0f;
    for (uint32_t c = 0; c < g_lat.n_classes; c++) sum += expf(g_scores[c] - g_scores[best]);
    st->prediction = g_lat.classes[best];
    st->confidence = 1.0f / sum;
    return TINYCL_OK;
}
#endif

static void process_frame(void) {
    tinycl_step_t st;
#if TINYCL_APP_LATENT
    tinycl_features_cut_q(g_pixels, g_q, g_cut); /* one forward pass: the features and the cut */
#else
    tinycl_features_q(g_pixels, g_q);
#endif
    tinycl_dequantize(g_q, g_x);
    const uint32_t sample_id = ++g_frame;
#if TINYCL_APP_LATENT
    const int rc = latent_step(&st);
#else
    const int rc = tinycl_undo_step(&g_undo, &g_ndc, g_x, &st); /* kept: a person's answer can be changed */
#endif
    if (rc == TINYCL_EFULL) { /* a global head filled the head with classes the clusterer lacks (or the reverse): the
                                 * prediction stands and is published, the frame is not learned */
        if (g_not_learned++ % 100u == 0)
            logf_("LOG frame %lu: no row for pseudo-label %ld in the head or prediction %ld in the clusterer (%u "
                  "classes each at most): predicted, not learned (%lu such frame(s))", (unsigned long)sample_id,
                  (long)st.pseudo_label, (long)st.prediction, (unsigned)MAXC, (unsigned long)g_not_learned);
    } else if (rc != TINYCL_OK) {
        logf_("LOG frame %lu: core step failed (%d): dropped", (unsigned long)sample_id, rc);
        return;
    }
    logf_("P %lu %lu %ld %ld", (unsigned long)g_frame - 1u, (unsigned long)sample_id, (long)st.prediction,
          (long)st.pseudo_label);
#if !TINYCL_APP_LATENT
    const int consolidated = g_ndc.cwr.n_batch == 0; /* a batch was just consolidated: kept, then published */
    if (consolidated && board_millis() - g_saved_at >= TINYCL_SAVE_PERIOD_MS) save_state();
#endif
    if (g_link != CONNECTED) return; /* learning (and saving it) goes on; messages need the agent */
    char num[12];
    stamp_now(&m_feat.header.stamp);
    memcpy(s_feat, g_x, sizeof g_x);
    m_feat.data.size = F;
    m_feat.sample_id = m_pred.sample_id = sample_id;
    m_pred.header.stamp = m_feat.header.stamp;
    m_pred.class_id = st.prediction;
    set_str(&m_pred.class_name, s_pred_name, NAME_CAP, st.prediction >= 0 ? class_name(st.prediction, num, sizeof num) : "");
    m_pred.confidence = st.confidence;
    publish(&pub_feat, &m_feat, &g_sent_feat, "features");
    publish(&pub_pred, &m_pred, &g_sent_pred, "predictions");
#if TINYCL_APP_LATENT
    const int unsure = st.confidence < TINYCL_ASK_BELOW || st.prediction < 0 || latent_untrained();
#else
    const int unsure = st.confidence < TINYCL_ASK_BELOW || st.prediction != st.pseudo_label;
#endif
    if (unsure && g_frame - g_last_ask >= TINYCL_ASK_GAP) {
        g_last_ask = g_frame;
        ask_label(sample_id, &st);
    }
#if !TINYCL_APP_LATENT
    if (consolidated) publish_head();
#endif
}

/* ------------------------------------------------------------------------------ messages the middleware drops */
#if TINYCL_RMW_DROP_COUNT
/* rmw_microxrcedds keeps each received message in one of RMW_UXRCE_MAX_HISTORY static buffers (10 in this build,
 * shared by the subscriptions) until the executor takes it, one per subscription and spin; a message that
 * arrives when none is free (a burst of answers while the board publishes: the session runs until the agent
 * confirms) is dropped in on_topic without a word (its trace needs RMW_UROS_ERROR_HANDLING, off in this build).
 * The link wraps the buffer allocator (-Wl,--wrap, app/CMakeLists.txt) to count them. */
struct rmw_uxrce_mempool_item_t;
struct rmw_uxrce_mempool_item_t *__real_rmw_uxrce_get_static_input_buffer_for_entity(void *entity,
                                                                                     const rmw_qos_profile_t qos);
struct rmw_uxrce_mempool_item_t *__wrap_rmw_uxrce_get_static_input_buffer_for_entity(void *entity,
                                                                                     const rmw_qos_profile_t qos);
struct rmw_uxrce_mempool_item_t *__wrap_rmw_uxrce_get_static_input_buffer_for_entity(void *entity,
                                                                                     const rmw_qos_profile_t qos) {
    struct rmw_uxrce_mempool_item_t *item = __real_rmw_uxrce_get_static_input_buffer_for_entity(entity, qos);
    if (!item) g_lost++;
    return item;
}
#endif

static void log_lost(void) {
    if (g_lost == g_lost_logged) return;
    logf_("LOG %lu received message(s) lost: the middleware's receive buffers were full (RMW_UXRCE_MAX_HISTORY)",
          (unsigned long)(g_lost - g_lost_logged));
    g_lost_logged = g_lost;
}

/* ------------------------------------------------------------------------------ setup / loop */
void setup(void);
void loop(void);

void setup(void) {
    static_messages();
#if TINYCL_APP_LATENT
    if (fresh_latent() != TINYCL_OK) {
        board_log("LOG the latent head's parameters were refused by the core");
        board_finish(2);
    }
    restore_state();
    logf_("LOG latent head: %lu classes, %lu samples learned, replay memory %lu of %lu", (unsigned long)g_lat.n_classes,
          (unsigned long)g_lat.n_seen, (unsigned long)g_lat.mem_size, (unsigned long)g_lat.p.memory_size);
#else
    if (tinycl_ndc_init(&g_ndc, TINYCL_INIT_LR, TINYCL_INIT_BATCH_SIZE, 0) != TINYCL_OK ||
        tinycl_ndc_init_from_labelled(&g_ndc, tinycl_init_x, tinycl_init_y, tinycl_init_n) != TINYCL_OK) {
        board_log("LOG the initial labelled samples were refused by the core");
        board_finish(2);
    }
    restore_state();
    (void)tinycl_undo_init(&g_undo, &g_ndc); /* an answer of an earlier boot can no longer be changed */
#endif
    g_boot_recounted = g_boot == 0;
    g_boot++; /* this boot's request ids differ from every earlier boot's; saved at once, before any request */
    save_state();
    if (board_transport_init() != 0) {
        board_log("LOG no micro-ROS transport");
        board_finish(2);
    }
    logf_("LOG tinycl board %s: %s learner, %lu samples learned, %lu classes, domain %d", TINYCL_DEVICE,
          g_restored ? "restored" : "initial", (unsigned long)learned(), (unsigned long)n_known(), TINYCL_DOMAIN_ID);
}

static void finish(void) {
    if (learned() != g_saved_seen) save_state();
    logf_("SENT features=%lu predictions=%lu head=%lu label_request=%lu label_status=%lu classes=%lu diagnostics=%lu "
          "failed=%lu", (unsigned long)g_sent_feat, (unsigned long)g_sent_pred, (unsigned long)g_sent_head,
          (unsigned long)g_sent_req, (unsigned long)g_sent_status, (unsigned long)g_sent_classes,
          (unsigned long)g_sent_diag, (unsigned long)g_failed);
    log_lost();
    logf_("APPLIED answers=%lu global=%lu refused=%lu lost=%lu reconnects=%lu frames=%lu", (unsigned long)g_answers,
          (unsigned long)g_globals, (unsigned long)g_refused, (unsigned long)g_lost, (unsigned long)g_reconnects,
          (unsigned long)g_frame);
    board_log("DONE");
    board_finish(0);
}

void loop(void) {
    static uint32_t last_check, ended_at, last_now;
    static int ended;
    const uint32_t now = board_millis();
    g_uptime_ms += now - last_now; /* modulo 2^32: right across board_millis()'s wrap */
    last_now = now;
    if (g_link == LOST) {
        destroy_entities();
        g_link = WAITING;
        g_lost_at = now;
        board_log("LOG agent lost: learning goes on, reconnecting");
    }
    if (g_link == WAITING && now - last_check >= TINYCL_WAIT_PERIOD_MS) {
        last_check = now;
        if (rmw_uros_ping_agent(100, 1) == RMW_RET_OK) {
            if (create_entities()) {
                g_link = CONNECTED;
                g_connected_at = board_millis();
                if (g_lost_at) {
                    g_reconnects++;
                    logf_("LOG reconnected %lu ms after the agent was lost", (unsigned long)(board_millis() - g_lost_at));
                } else {
                    board_log("LOG connected");
                }
                publish_head();
            } else {
                destroy_entities();
            }
        }
    } else if (g_link == CONNECTED && now - last_check >= TINYCL_PING_PERIOD_MS) {
        last_check = now;
        if (rmw_uros_ping_agent(TINYCL_PING_TIMEOUT_MS, TINYCL_PING_ATTEMPTS) != RMW_RET_OK) g_link = LOST;
    }
    if (!ended) {
        const int got = board_next_frame(g_pixels);
        if (got > 0) process_frame();
        if (got < 0) {
            ended = 1;
            ended_at = now;
            logf_("LOG stream ended after %lu frames", (unsigned long)g_frame);
            if (learned() != g_saved_seen) save_state(); /* now: the agent may not come back to end the run */
        }
    } else if (now - ended_at >= TINYCL_FLUSH_MS && g_link == CONNECTED) {
        finish();
    }
    log_lost();
    if (g_link == CONNECTED && n_pubs == N_PUBS && now - g_diag_due >= TINYCL_DIAG_PERIOD_MS) publish_diagnostics();
    if (g_link == CONNECTED) {
        rx_buffers(); /* rclc takes once per subscription and spin: a string too long for its buffer is seen */
        const rcl_ret_t rc = rclc_executor_spin_some(&executor, RCL_MS_TO_NS(1));
        if (rc != RCL_RET_OK && rc != RCL_RET_TIMEOUT) {
            /* rcl_take's RCL_RET_ERROR: rmw_microxrcedds could not deserialise the buffered message into the
             * static receive buffers (a malformed message; a sequence of messages longer than its buffer; a string
             * or a sequence of numbers longer than its buffer only as the message's last field, else it is taken as
             * empty: rx_too_long). It
             * also returned it for a message it discarded as stamped in the future: the board's clock went back
             * (fixed in the board's clock_gettime: the clock is monotonic now). */
            g_refused++;
            logf_("LOG a received message could not be decoded into its receive buffers (larger than they are, or "
                  "malformed; rcl %ld: %s): dropped", (long)rc, rcl_error_text());
            rcl_reset_error();
        }
    }
}

/* http/service.c — the service object: its parts (logger, metrics, health) made and freed
 * together, and its accessors. */
#include "http/http_internal.h"

#include "health/api.h"

#include <stdio.h>

void o11y_service_config_init(o11y_service_config *cfg)
{
    *cfg = (o11y_service_config){
        .service_name = "unknown-service",
        .version = "0.0.0",
        .max_body_bytes = 1u << 20,
        .project_param = "projectId",
        .job_param = "jobId",
    };
    o11y_log_config_init(&cfg->log);
    cfg->log.service_name = NULL;
}

void o11y_service_destroy(o11y_service *svc)
{
    if (!svc)
        return;
    for (size_t i = 0; i < svc->n_routes; i++)
        o11y__route_free(svc->routes[i]);
    o11y__health_destroy(svc->health); /* its checks log and record until they stop */
    o11y__ratelimit_free(svc->ratelimit);
    o11y__cors_free(svc->cors);
    o11y__client_logs_free(svc->client_logs);
    if (svc->owns_logger)
        o11y_logger_destroy(svc->logger);
    if (svc->owns_metrics)
        o11y_metrics_destroy(svc->metrics);
    o11y__free(svc->name);
    o11y__free(svc->version);
    o11y__free(svc->problem_base);
    o11y__free(svc->project_param);
    o11y__free(svc->job_param);
    o11y__free(svc->service_header);
    o11y__free(svc->idem_client_header);
    pthread_mutex_destroy(&svc->streams_lock);
    o11y__free(svc);
}

static bool header_value_safe(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return false;
    return true;
}

o11y_status o11y_service_create(const o11y_service_config *cfg_in, o11y_service **out)
{
    if (!out)
        return O11Y_EINVAL;
    *out = NULL;
    o11y_service_config cfg;
    o11y_service_config_init(&cfg);
    if (cfg_in) {
        cfg = *cfg_in;
        if (!cfg.service_name)
            cfg.service_name = "unknown-service";
        if (!cfg.version)
            cfg.version = "0.0.0";
        if (!cfg.max_body_bytes)
            cfg.max_body_bytes = 1u << 20;
        if (!cfg.project_param)
            cfg.project_param = "projectId";
        if (!cfg.job_param)
            cfg.job_param = "jobId";
    }
    if (!*cfg.service_name || strlen(cfg.service_name) > 128 ||
        !header_value_safe(cfg.service_name) || !header_value_safe(cfg.version))
        return O11Y_EINVAL;

    o11y_service *svc = o11y__calloc(1, sizeof *svc);
    if (!svc)
        return O11Y_ENOMEM;
    svc->max_body = cfg.max_body_bytes;
    pthread_mutex_init(&svc->streams_lock, NULL);
    svc->access_log = !cfg.access_log_off;
    svc->name = o11y__strdup(cfg.service_name);
    svc->version = o11y__strdup(cfg.version);
    svc->service_header = o11y__strdup(cfg.service_name);
    svc->service_header_len = svc->service_header ? strlen(svc->service_header) : 0;
    svc->project_param = o11y__strdup(cfg.project_param);
    svc->job_param = o11y__strdup(cfg.job_param);
    if (cfg.problem_type_base)
        svc->problem_base = o11y__strdup(cfg.problem_type_base);
    if (!svc->name || !svc->version || !svc->service_header || !svc->project_param ||
        !svc->job_param || (cfg.problem_type_base && !svc->problem_base)) {
        o11y_service_destroy(svc);
        return O11Y_ENOMEM;
    }
    if (cfg.logger) {
        svc->logger = cfg.logger;
    } else {
        o11y_log_config lc = cfg.log;
        if (!lc.service_name)
            lc.service_name = cfg.service_name;
        o11y_status st = o11y_logger_create(&lc, &svc->logger);
        if (st != O11Y_OK) {
            o11y_service_destroy(svc);
            return st;
        }
        svc->owns_logger = true;
    }
    o11y_logger_set_default(svc->logger);
    svc->started_ns = o11y__now_real_ns();
    if (cfg.metrics) {
        svc->metrics = cfg.metrics;
    } else {
        o11y_status st = o11y_metrics_create(&svc->metrics);
        if (st != O11Y_OK) {
            o11y_service_destroy(svc);
            return st;
        }
        svc->owns_metrics = true;
    }
    o11y_status st = o11y__service_metrics_init(svc, !cfg.no_metrics_routes);
    if (st == O11Y_OK)
        st = o11y__health_create(svc->name, svc->version, svc->logger, svc->metrics, &svc->health);
    if (st == O11Y_OK && !cfg.no_health_routes)
        st = o11y__service_health_routes(svc);
    if (st != O11Y_OK) {
        o11y_service_destroy(svc);
        return st;
    }
    *out = svc;
    return O11Y_OK;
}

o11y_logger *o11y_service_logger(const o11y_service *svc)
{
    return svc ? svc->logger : NULL;
}

o11y_metrics *o11y_service_metrics(const o11y_service *svc)
{
    return svc ? svc->metrics : NULL;
}

o11y_health *o11y_service_health(const o11y_service *svc)
{
    return svc ? svc->health : NULL;
}

const char *o11y_service_name(const o11y_service *svc)
{
    return svc ? svc->name : NULL;
}

const char *o11y_service_version(const o11y_service *svc)
{
    return svc ? svc->version : NULL;
}

-- AF burden (alerts::burden): per patient and stream, the time of AF findings counted
-- so far (microseconds of device time): in AF, monitored (present or absent, never
-- indeterminate), where counting has reached (each instant counts once though windows
-- overlap) and where it began.
CREATE TABLE af_burden (
    patient TEXT NOT NULL,
    stream TEXT NOT NULL,
    af_us BIGINT NOT NULL,
    monitored_us BIGINT NOT NULL,
    counted_end_us BIGINT NOT NULL,
    since_us BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL,
    PRIMARY KEY (patient, stream)
);

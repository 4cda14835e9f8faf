"""Operations: systemd notification and watchdog, metrics, reload, graceful stop."""

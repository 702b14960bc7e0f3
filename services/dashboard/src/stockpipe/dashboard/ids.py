"""Component ids of the Dash pages, in one place (callbacks and browser tests use these)."""

URL = "url"
THEME = "theme"  # dcc.Store (localStorage): "light" | "dark"
THEME_TOGGLE = "theme-toggle"
PAGE = "page"
NAV = "nav"

# Overview
OVERVIEW_WINDOW = "overview-window"
OVERVIEW_TABLE = "overview-table"
OVERVIEW_REFRESH = "overview-refresh"

# Symbol view
SYMBOL = "symbol"  # dcc.Store: the symbol shown
SYMBOL_INTERVAL = "symbol-interval"
SYMBOL_WINDOW = "symbol-window"
SYMBOL_OVERLAYS = "symbol-overlays"
SYMBOL_GRAPH = "symbol-graph"
SYMBOL_HEADER = "symbol-header"
SYMBOL_FORECASTS = "symbol-forecasts"
SYMBOL_STATUS = "symbol-status"
LIVE_TICK = "live-tick"
LIVE_STATE = "live-state"  # dcc.Store: what the figure holds (series, last bar/indicator ts)

# Alerts
ALERTS_SYMBOL = "alerts-symbol"
ALERTS_RULE = "alerts-rule"
ALERTS_TABLE = "alerts-table"
ALERTS_NEWER = "alerts-newer"
ALERTS_OLDER = "alerts-older"
ALERTS_PAGING = "alerts-paging"  # dcc.Store: cursor stack
ALERTS_PAGE_INFO = "alerts-page-info"

# Pipeline health
HEALTH_TICK = "health-tick"
HEALTH_TABLE = "health-table"
HEALTH_SAMPLES = "health-samples"  # dcc.Store: the previous scrape, for rates

// Node-RED settings for a fleetgate-managed line device.
// The flows are read-only: they are changed by a merge request to the fleet
// repository, reviewed, and rolled out in the line's update window.
module.exports = {
    flowFile: "flows.json",
    flowFilePretty: true,
    uiPort: process.env.PORT || 1880,
    // No editor on the shop floor: the repository is the editor.
    disableEditor: true,
    httpAdminRoot: false,
    readOnly: true,
    logging: {
        console: {
            level: process.env.NODE_RED_LOG_LEVEL || "info",
            metrics: false,
            audit: false,
        },
    },
    contextStorage: {
        default: { module: "localfilesystem" },
    },
    exportGlobalContextKeys: false,
    functionGlobalContext: {},
};
